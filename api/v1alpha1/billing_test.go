package v1alpha1

import (
	"errors"
	"testing"
)

func TestPricePerGBInMicroDollars(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"", 50000}, // default $0.05
		{"0.05", 50000},
		{"1", 1_000_000},
		{"12.345678", 12_345_678},
		{"0.000001", 1},
	} {
		got, err := BillingSpec{PricePerGB: tc.in}.PricePerGBMicroUSD()
		if err != nil || got != tc.want {
			t.Errorf("%q: got %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"-1", "0.0000001", "1.", ".5", "abc", "1e3"} {
		if _, err := (BillingSpec{PricePerGB: bad}).PricePerGBMicroUSD(); !errors.Is(err, ErrInvalidPrice) {
			t.Errorf("%q: err = %v, want ErrInvalidPrice", bad, err)
		}
	}
}
