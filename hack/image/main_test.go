package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestImageTarballRunsBinaryAsNonRootAndIsReproducible(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchboard")
	if err := os.WriteFile(bin, []byte("\x7fELF not really a binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	if err := run(bin, "switchboard:test", out, "amd64", "test"); err != nil {
		t.Fatalf("run: %v", err)
	}
	tag, _ := name.NewTag("switchboard:test")
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("tarball does not read back: %v", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("config user %q os %q arch %q, want 65532:65532 linux amd64", cf.Config.User, cf.OS, cf.Architecture)
	}
	d1, _ := img.Digest()

	out2 := filepath.Join(dir, "again.tar")
	if err := run(bin, "switchboard:test", out2, "amd64", "test"); err != nil {
		t.Fatal(err)
	}
	img2, err := tarball.ImageFromPath(out2, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := img2.Digest(); d1 != d2 {
		t.Errorf("same binary gave digests %s and %s", d1, d2)
	}
}

func TestCheckRejectsATarballWithoutTheBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "switchboard")
	if err := os.WriteFile(bin, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	if err := run(bin, "switchboard:test", out, "amd64", "test"); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("switchboard:test")
	// A binary of another size than the one packed must fail the check.
	if err := check(out, tag, 12345); !errors.Is(err, ErrBadImage) {
		t.Fatalf("check with a wrong binary size: %v, want ErrBadImage", err)
	}
}
