// Command masterexample is package master's doc example put in main, the
// way a new user would: without the guard in master.Run every worker (this
// same program, run again) would start masters of its own.
package main

import (
	"context"
	"log"
	"os"

	"github.com/preforkd/preforkd/listener"
	"github.com/preforkd/preforkd/master"
)

func main() {
	err := master.Run(context.Background(), master.Config{
		Workers:     4,
		Listen:      []listener.Spec{{Name: "http", Network: "tcp", Address: os.Getenv("EXAMPLE_ADDR")}},
		MetricsAddr: os.Getenv("EXAMPLE_METRICS"),
		Control:     os.Getenv("EXAMPLE_CONTROL"),
	})
	if err != nil {
		log.Fatal(err)
	}
}
