package main

import (
	"context"
	"errors"
)

func init() {
	register("dev", "not built yet", func(context.Context, []string) error {
		return errors.New("the dev command is not built yet")
	})
}
