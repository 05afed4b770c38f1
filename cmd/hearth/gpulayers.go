package main

import (
	"fmt"

	"github.com/spf13/pflag"
)

// gpuLayersFlag adds --gpu-layers, llama.cpp's -ngl.
func gpuLayersFlag(fs *pflag.FlagSet) *int {
	return fs.Int("gpu-layers", -1, "model layers on the GPU, counted from the last as llama.cpp's -ngl (more than the model has: the output layer too, e.g. 99: all; 0: none); -1: as many as fit in free GPU memory")
}

// placement turns --device and --gpu-layers into engine.Options' Device
// and GPULayers: the engine's 0 is "fit by free memory" (the flag's -1),
// and --gpu-layers 0 is the CPU.
func placement(device string, gpuLayers int) (string, int, error) {
	switch {
	case gpuLayers < -1:
		return "", 0, usageError{fmt.Sprintf("--gpu-layers %d: want a count, or -1 to fit by free memory", gpuLayers)}
	case gpuLayers == -1:
		return device, 0, nil
	case gpuLayers == 0:
		if device == "cuda" || device == "gpu" {
			return "", 0, usageError{"--gpu-layers 0 puts nothing on the GPU, but --device " + device + " insists on it"}
		}
		return "cpu", 0, nil
	}
	return device, gpuLayers, nil
}
