// Command image packs a static switchboard binary into a container image
// tarball without a Docker daemon: an empty (scratch) base, the binary at
// /switchboard, an /etc/passwd and /etc/group naming the non-root user 65532,
// and a world-writable /tmp. The tarball is in the docker-archive format that
// `docker load`, `ctr images import`, `kind load image-archive` and
// `k3s ctr images import` accept. It is reproducible: file times and the
// creation time are fixed, so the same binary gives the same image digest.
//
// After writing, the command reads the tarball back and checks the user,
// entrypoint and files, so a broken image fails the build.
//
// It is a tool module of its own so the main module does not carry the image
// library's dependencies.
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// UID and GID of the image's user; the operator's pod templates run as the
// same IDs.
const nonRootID = 65532

// ErrBadImage is returned when the written tarball does not read back as
// the image that was meant.
var ErrBadImage = errors.New("image check failed")

func main() {
	binary := flag.String("binary", "bin/linux/switchboard", "static switchboard binary to pack")
	tag := flag.String("tag", "switchboard:dev", "image reference written into the tarball")
	out := flag.String("out", "bin/switchboard-image.tar", "tarball to write")
	arch := flag.String("arch", runtime.GOARCH, "image architecture (must match the binary)")
	version := flag.String("version", "dev", "value of the org.opencontainers.image.version label")
	flag.Parse()
	if err := run(*binary, *tag, *out, *arch, *version); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(binary, tagName, out, arch, version string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("read binary: %w", err)
	}
	ref, err := name.NewTag(tagName)
	if err != nil {
		return fmt.Errorf("parse tag %q: %w", tagName, err)
	}
	img, err := build(bin, arch, version)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(out, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := check(out, ref, len(bin)); err != nil {
		return err
	}
	d, _ := img.Digest()
	fmt.Printf("wrote %s (%s, %s, user %d)\n", out, ref, d, nonRootID)
	return nil
}

type file struct {
	name string
	mode int64
	body []byte
	dir  bool
}

func build(bin []byte, arch, version string) (v1.Image, error) {
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonRootID, nonRootID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonRootID)
	files := []file{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, body: []byte(passwd)},
		{name: "etc/group", mode: 0o644, body: []byte(group)},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "switchboard", mode: 0o755, body: bin},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0).UTC()
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), ModTime: epoch, Format: tar.FormatPAX, Typeflag: tar.TypeReg}
		if f.dir {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer header %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("layer %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = fmt.Sprintf("%d:%d", nonRootID, nonRootID)
	cf.Config.Entrypoint = []string{"/switchboard"}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":       "switchboard",
		"org.opencontainers.image.description": "Switchboard operator, SFU and TURN (one binary)",
		"org.opencontainers.image.version":     version,
		"org.opencontainers.image.source":      "https://github.com/switchboard-rtc/switchboard",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// check reads the tarball back the way an importer does and verifies what
// users rely on: the non-root user, the entrypoint and the binary.
func check(path string, ref name.Tag, binSize int) error {
	img, err := tarball.ImageFromPath(path, &ref)
	if err != nil {
		return fmt.Errorf("%w: read back %s: %w", ErrBadImage, path, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("%w: config: %w", ErrBadImage, err)
	}
	if want := fmt.Sprintf("%d:%d", nonRootID, nonRootID); cf.Config.User != want {
		return fmt.Errorf("%w: user %q, want %q", ErrBadImage, cf.Config.User, want)
	}
	if len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/switchboard" {
		return fmt.Errorf("%w: entrypoint %q", ErrBadImage, cf.Config.Entrypoint)
	}
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: filesystem: %w", ErrBadImage, err)
		}
		seen[h.Name] = h
	}
	bin := seen["switchboard"]
	if bin == nil || bin.Size != int64(binSize) || bin.Mode&0o111 == 0 {
		return fmt.Errorf("%w: /switchboard missing, truncated or not executable", ErrBadImage)
	}
	if seen["etc/passwd"] == nil {
		return fmt.Errorf("%w: /etc/passwd missing", ErrBadImage)
	}
	return nil
}
