package composer_test

import (
	"context"
	"fmt"

	"github.com/agentid/agentid/composer"
	"github.com/agentid/agentid/svid"
)

func ExampleComposer_Extension() {
	// The plugin passes the HCL of plugin_data and the server's trust domain.
	cfg, err := composer.ParseConfig(`cache_ttl = "5s"`, "example.org")
	if err != nil {
		panic(err)
	}
	// In SPIRE the source is composer.NewAPISource on the server API socket.
	src := memSource{}
	src.add(entryOf(delegated("T-3"), "agentid"))
	c := composer.New(cfg, src, composer.WithClock(newClock().Now))

	id := taskID("researcher", "T-3")
	ext, err := c.Extension(context.Background(), id)
	if err != nil {
		panic(err)
	}
	claims, _ := svid.DecodeExtension(ext)
	fmt.Println(ext.Id, claims.Agent, claims.Task, claims.Depth(), claims.Delegator())
	// Output: 1.3.6.1.4.1.32473.1.1 researcher T-3 2 spiffe://example.org/agent/writer/task/T-2
}
