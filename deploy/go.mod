module github.com/preforkd/preforkd/deploy

go 1.26.8

replace github.com/preforkd/preforkd => ../

require github.com/preforkd/preforkd v0.0.0-00010101000000-000000000000

require (
	github.com/cloudflare/tableflip v1.2.3 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
