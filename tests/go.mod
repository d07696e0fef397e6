module github.com/shiploop/shiploop/tests

go 1.26.7

require (
	github.com/shiploop/shiploop/proto v0.0.0
	go.yaml.in/yaml/v3 v3.0.6
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.13-0.20261016172727-e9ee2a76ab8e
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260928230214-8a89bd6388cc // indirect
)

replace (
	github.com/shiploop/shiploop/pkg => ../pkg
	github.com/shiploop/shiploop/proto => ../proto
)
