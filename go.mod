module github.com/agentid/agentid

go 1.26.0

require github.com/spiffe/go-spiffe/v2 v2.9.0

require (
	github.com/go-jose/go-jose/v4 v4.1.5 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261110000943-09e21b237f2c // indirect
	google.golang.org/grpc v1.85.0 // indirect
)
