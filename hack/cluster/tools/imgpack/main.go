package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ErrUsage reports a bad command line.
var ErrUsage = errors.New("usage")

// fileSpec is one -file flag: a host file, its path in the image and its mode.
type fileSpec struct {
	src, dst string
	mode     int64
}

type fileList []fileSpec

func (l *fileList) String() string { return fmt.Sprint(len(*l), " files") }

func (l *fileList) Set(v string) error {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !path.IsAbs(parts[1]) {
		return fmt.Errorf("%w: -file wants SRC:/ABS/DST[:MODE], got %q", ErrUsage, v)
	}
	f := fileSpec{src: parts[0], dst: path.Clean(parts[1]), mode: 0o755}
	if len(parts) == 3 {
		m, err := strconv.ParseInt(parts[2], 8, 32)
		if err != nil {
			return fmt.Errorf("%w: bad mode in %q: %v", ErrUsage, v, err)
		}
		f.mode = m
	}
	*l = append(*l, f)
	return nil
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var files fileList
	var env stringList
	tag := flag.String("tag", "", "image reference to record in the tarball, e.g. local.test/hello:v1")
	out := flag.String("out", "", "tarball to write")
	entry := flag.String("entrypoint", "", "entrypoint (default: the first -file destination)")
	user := flag.String("user", "", "user the image runs as by default (e.g. 65532)")
	flag.Var(&files, "file", "SRC:DST[:MODE] to add (repeatable; MODE octal, default 755)")
	flag.Var(&env, "env", "K=V environment entry (repeatable)")
	flag.Parse()
	if err := run(*tag, *out, *entry, *user, files, env); err != nil {
		fmt.Fprintln(os.Stderr, "imgpack:", err)
		os.Exit(1)
	}
}

func run(tag, out, entry, user string, files []fileSpec, env []string) error {
	if tag == "" || out == "" || len(files) == 0 {
		return fmt.Errorf("%w: -tag, -out and at least one -file are required", ErrUsage)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("parse tag %q: %w", tag, err)
	}
	if entry == "" {
		entry = files[0].dst
	}
	layerBytes, err := buildLayer(files)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return fmt.Errorf("make layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = v1.Config{
		Entrypoint: []string{entry},
		Env:        append([]string{"PATH=/"}, env...),
		WorkingDir: "/",
		User:       user,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("digest: %w", err)
	}
	slog.Info("image written", "tag", ref.Name(), "out", out, "digest", digest.String())
	return nil
}

// buildLayer returns an uncompressed tar holding the base files and every
// requested file, directories first, with fixed timestamps.
func buildLayer(files []fileSpec) ([]byte, error) {
	epoch := time.Unix(0, 0)
	const passwd = "root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/:/nonexistent\n"
	const group = "root:x:0:\nnogroup:x:65534:\n"
	dirs := map[string]int64{"tmp": 0o1777, "etc": 0o755}
	contents := map[string][]byte{"etc/passwd": []byte(passwd), "etc/group": []byte(group)}
	modes := map[string]int64{"etc/passwd": 0o644, "etc/group": 0o644}
	for _, f := range files {
		data, err := os.ReadFile(f.src)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.src, err)
		}
		rel := strings.TrimPrefix(f.dst, "/")
		contents[rel], modes[rel] = data, f.mode
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if _, ok := dirs[d]; !ok {
				dirs[d] = 0o755
			}
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range sortedKeys(dirs) {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: dirs[d], ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", d, err)
		}
	}
	for _, p := range sortedKeys(contents) {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: modes[p], Size: int64(len(contents[p])), ModTime: epoch}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", p, err)
		}
		if _, err := tw.Write(contents[p]); err != nil {
			return nil, fmt.Errorf("tar %s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
