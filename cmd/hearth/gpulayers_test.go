package main

import (
	"io"
	"testing"
)

func TestPlacement(t *testing.T) {
	for _, c := range []struct {
		device  string
		flag    int
		wantDev string
		wantN   int
		bad     bool
	}{
		{"auto", -1, "auto", 0, false}, // fit by free memory
		{"cuda", -1, "cuda", 0, false},
		{"auto", 0, "cpu", 0, false}, // none: the CPU
		{"cpu", 0, "cpu", 0, false},
		{"cuda", 0, "", 0, true}, // a contradiction
		{"auto", 20, "auto", 20, false},
		{"cuda", 99, "cuda", 99, false},
		{"auto", -2, "", 0, true},
	} {
		dev, n, err := placement(c.device, c.flag)
		if (err != nil) != c.bad || !c.bad && (dev != c.wantDev || n != c.wantN) {
			t.Errorf("--device %s --gpu-layers %d: %q, %d, %v", c.device, c.flag, dev, n, err)
		}
		if _, ok := err.(usageError); err != nil && !ok {
			t.Errorf("--gpu-layers %d: %T is not a usage error", c.flag, err)
		}
	}
}

func TestServeGPULayers(t *testing.T) {
	dir := t.TempDir()
	o, err := parseServe([]string{"--models", dir, "--gpu-layers", "12"}, io.Discard)
	if err != nil || o.gpuLayers != 12 || o.device != "auto" {
		t.Errorf("--gpu-layers 12: %+v, %v", o, err)
	}
	if o, err = parseServe([]string{"--models", dir, "--gpu-layers", "0"}, io.Discard); err != nil || o.device != "cpu" {
		t.Errorf("--gpu-layers 0: %+v, %v", o, err)
	}
	if o, err = parseServe([]string{"--models", dir}, io.Discard); err != nil || o.gpuLayers != 0 || o.device != "auto" {
		t.Errorf("no --gpu-layers: %+v, %v", o, err)
	}
}
