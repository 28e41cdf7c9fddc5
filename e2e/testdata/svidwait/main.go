// Command svidwait is the workload of BenchmarkCreateToSVID: it polls the
// SPIRE agent's Workload API (every -poll) until it is issued an
// X.509-SVID with SPIFFE ID -id, then prints the Unix time in nanoseconds
// at which it got it and the number of fetches it made, and exits 0; it
// exits 1 after -timeout. Launched with `agentid run --task-file`, it is
// the task's process, attested by the agentid workload attestor.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	socket := flag.String("socket", "", "Workload API socket path")
	id := flag.String("id", "", "SPIFFE ID to wait for")
	poll := flag.Duration("poll", 20*time.Millisecond, "time between fetches")
	timeout := flag.Duration("timeout", time.Minute, "give up after")
	flag.Parse()
	end := time.Now().Add(*timeout)
	var last error
	for n := 1; time.Now().Before(end); n++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr("unix://"+*socket))
		cancel()
		if err == nil && s.ID.String() == *id {
			fmt.Println(time.Now().UnixNano(), n)
			return
		}
		if err == nil {
			err = fmt.Errorf("issued %s", s.ID)
		}
		last = err
		time.Sleep(*poll)
	}
	fmt.Fprintf(os.Stderr, "svidwait: no X.509-SVID for %s within %v: %v\n", *id, *timeout, last)
	os.Exit(1)
}
