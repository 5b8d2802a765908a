package v1alpha1

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidPrice is returned for a price that is not a decimal with at most
// six decimals.
var ErrInvalidPrice = errors.New("invalid price")

// PricePerGBMicroUSD returns spec.billing.pricePerGB in millionths of a US
// dollar ("0.05" is 50000), or the default price when unset.
func (b BillingSpec) PricePerGBMicroUSD() (int64, error) {
	s := b.PricePerGB
	if s == "" {
		s = DefaultPricePerGB
	}
	whole, frac, _ := strings.Cut(s, ".")
	if whole == "" || len(whole) > 6 || len(frac) > 6 || (strings.Contains(s, ".") && frac == "") {
		return 0, fmt.Errorf("%w: spec.billing.pricePerGB %q", ErrInvalidPrice, s)
	}
	w, err := strconv.ParseUint(whole, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: spec.billing.pricePerGB %q", ErrInvalidPrice, s)
	}
	var f uint64
	if frac != "" {
		f, err = strconv.ParseUint(frac+strings.Repeat("0", 6-len(frac)), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%w: spec.billing.pricePerGB %q", ErrInvalidPrice, s)
		}
	}
	return int64(w)*1_000_000 + int64(f), nil
}
