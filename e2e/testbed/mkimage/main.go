// Command mkimage writes a single-layer container image tarball from local
// files, in the format `ctr images import` loads. The test bed has no
// registry and no image builder: every image it runs is made this way.
//
//	mkimage --out FILE.tar --ref NAME:TAG --file SRC:DST[:MODE] ...
//	        [--tree SRC:DST ...] [--dir DST[:MODE] ...] [--symlink TARGET:LINK ...]
//	        [--entrypoint /path] [--cmd ARG ...] [--env K=V ...]
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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

// epoch is the timestamp of every entry and of the image itself, so that the
// same inputs always give the same image digest.
var epoch = time.Unix(0, 0).UTC()

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	var files, trees, dirs, links, cmd, env list
	out := fs.String("out", "", "image tarball to write")
	ref := fs.String("ref", "", "image reference, NAME:TAG")
	entry := fs.String("entrypoint", "", "entrypoint path")
	fs.Var(&files, "file", "SRC:DST[:MODE] file to add (MODE octal, default the source's)")
	fs.Var(&trees, "tree", "SRC:DST directory tree to add under DST (files, directories and links as they are)")
	fs.Var(&dirs, "dir", "DST[:MODE] directory to add (default 0755)")
	fs.Var(&links, "symlink", "TARGET:LINK symbolic link to add")
	fs.Var(&cmd, "cmd", "command argument (repeat for each)")
	fs.Var(&env, "env", "K=V environment variable (PATH is set by default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *ref == "" {
		return errors.New("--out and --ref are required")
	}
	tag, err := name.NewTag(*ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("parse reference %q: %w", *ref, err)
	}
	layerTar, err := buildLayer(files, trees, dirs, links)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("make layer: %w", err)
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "mkimage",
		},
	})
	if err != nil {
		return fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("read image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = "amd64"
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	if *entry != "" {
		cf.Config.Entrypoint = []string{*entry}
	}
	if len(cmd) > 0 {
		cf.Config.Cmd = cmd
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("set image config: %w", err)
	}
	if err := tarball.WriteToFile(*out, tag, img); err != nil {
		return fmt.Errorf("write image %s: %w", *out, err)
	}
	return nil
}

type entry struct {
	hdr  *tar.Header
	data []byte
}

// buildLayer returns an uncompressed tar of the requested trees, files,
// directories and links (in that order, a later one replacing an earlier
// one at the same path), with every missing parent directory added and
// entries sorted so parents come first.
func buildLayer(files, trees, dirs, links []string) ([]byte, error) {
	entries := map[string]entry{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = entry{hdr: dirHeader(d, 0o755)}
			}
		}
	}
	for _, tr := range trees {
		src, dst, ok := strings.Cut(tr, ":")
		if !ok || src == "" || dst == "" {
			return nil, fmt.Errorf("--tree %q: want SRC:DST", tr)
		}
		if err := addTree(entries, src, path.Clean("/"+dst)); err != nil {
			return nil, err
		}
		addParents(path.Clean("/" + dst + "/x"))
	}
	for _, f := range files {
		parts := strings.Split(f, ":")
		if len(parts) < 2 || len(parts) > 3 {
			return nil, fmt.Errorf("--file %q: want SRC:DST[:MODE]", f)
		}
		src, dst := parts[0], path.Clean("/"+parts[1])
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", src, err)
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("stat %s: %w", src, err)
		}
		mode := int64(st.Mode().Perm())
		if len(parts) == 3 {
			if mode, err = strconv.ParseInt(parts[2], 8, 32); err != nil {
				return nil, fmt.Errorf("--file %q: mode: %w", f, err)
			}
		}
		entries[dst] = entry{hdr: &tar.Header{
			Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: mode,
			Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX,
		}, data: data}
		addParents(dst)
	}
	for _, d := range dirs {
		dst, modeStr, hasMode := strings.Cut(d, ":")
		dst = path.Clean("/" + dst)
		mode := int64(0o755)
		if hasMode {
			var err error
			if mode, err = strconv.ParseInt(modeStr, 8, 32); err != nil {
				return nil, fmt.Errorf("--dir %q: mode: %w", d, err)
			}
		}
		entries[dst] = entry{hdr: dirHeader(dst, mode)}
		addParents(dst)
	}
	for _, l := range links {
		target, link, ok := strings.Cut(l, ":")
		if !ok || target == "" || link == "" {
			return nil, fmt.Errorf("--symlink %q: want TARGET:LINK", l)
		}
		link = path.Clean("/" + link)
		entries[link] = entry{hdr: &tar.Header{
			Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(link, "/"), Linkname: target,
			Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX,
		}}
		addParents(link)
	}
	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		e := entries[n]
		if err := tw.WriteHeader(e.hdr); err != nil {
			return nil, fmt.Errorf("write tar header %s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("write tar entry %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer tar: %w", err)
	}
	return buf.Bytes(), nil
}

func dirHeader(p string, mode int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: mode,
		ModTime: epoch, Format: tar.FormatPAX,
	}
}

// addTree adds everything under the directory src at dst: regular files
// (a hard link as a copy), directories and symbolic links, with their
// permission bits; other kinds are refused.
func addTree(entries map[string]entry, src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		name := path.Join(dst, filepath.ToSlash(rel))
		if name == "/" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		mode := int64(info.Mode().Perm())
		for bit, m := range map[fs.FileMode]int64{fs.ModeSetuid: 0o4000, fs.ModeSetgid: 0o2000, fs.ModeSticky: 0o1000} {
			if info.Mode()&bit != 0 {
				mode |= m
			}
		}
		rel = strings.TrimPrefix(name, "/")
		switch {
		case d.IsDir():
			entries[name] = entry{hdr: dirHeader(name, mode)}
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			entries[name] = entry{hdr: &tar.Header{
				Typeflag: tar.TypeSymlink, Name: rel, Linkname: target,
				Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX,
			}}
		case d.Type().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			entries[name] = entry{hdr: &tar.Header{
				Typeflag: tar.TypeReg, Name: rel, Mode: mode,
				Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX,
			}, data: data}
		default:
			return fmt.Errorf("--tree %s: %s is neither a file, a directory nor a link", src, p)
		}
		return nil
	})
}
