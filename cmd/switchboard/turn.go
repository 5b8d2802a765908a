package main

import (
	"context"
	"errors"
)

func init() {
	register("turn", "not built yet", func(context.Context, []string) error {
		return errors.New("the turn command is not built yet")
	})
}
