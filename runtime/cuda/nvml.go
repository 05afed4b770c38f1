//go:build cgo

package cuda

import (
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

var nvmlOnce struct {
	sync.Once
	err error
}

// nvmlInit initialises NVML once per process (go-nvml dlopens
// libnvidia-ml.so.1 at run time, so this builds and runs without a GPU).
func nvmlInit() error {
	nvmlOnce.Do(func() {
		if r := nvml.Init(); r != nvml.SUCCESS {
			nvmlOnce.err = fmt.Errorf("%w: NVML: %s", ErrNoDevice, nvml.ErrorString(r))
		}
	})
	return nvmlOnce.err
}

// ReadTelemetry samples GPU index through NVML. Without NVML (no driver)
// it returns an error wrapping ErrNoDevice.
func ReadTelemetry(index int) (Telemetry, error) {
	t := Telemetry{Index: index}
	if err := nvmlInit(); err != nil {
		return t, err
	}
	n, r := nvml.DeviceGetCount()
	if r != nvml.SUCCESS {
		return t, fmt.Errorf("%w: NVML: %s", ErrNoDevice, nvml.ErrorString(r))
	}
	if index < 0 || index >= n {
		return t, fmt.Errorf("%w: GPU %d asked for, NVML sees %d", ErrNoDevice, index, n)
	}
	dev, r := nvml.DeviceGetHandleByIndex(index)
	if r != nvml.SUCCESS {
		return t, fmt.Errorf("NVML: GPU %d: %s", index, nvml.ErrorString(r))
	}
	// Each reading is optional: a board may not report power or
	// utilisation (MIG slices, some vGPUs); what fails stays zero.
	if name, r := dev.GetName(); r == nvml.SUCCESS {
		t.Name = name
	}
	if m, r := dev.GetMemoryInfo(); r == nvml.SUCCESS {
		t.MemTotal, t.MemFree, t.MemUsed = m.Total, m.Free, m.Used
	}
	if major, minor, r := dev.GetCudaComputeCapability(); r == nvml.SUCCESS {
		t.CC = [2]int{major, minor}
	}
	if mw, r := dev.GetPowerUsage(); r == nvml.SUCCESS {
		t.PowerW = float64(mw) / 1000
	}
	if u, r := dev.GetUtilizationRates(); r == nvml.SUCCESS {
		t.UtilGPU, t.UtilMemory = int(u.Gpu), int(u.Memory)
	}
	if c, r := dev.GetTemperature(nvml.TEMPERATURE_GPU); r == nvml.SUCCESS {
		t.TempC = int(c)
	}
	return t, nil
}

// TelemetryAvailable says whether this build reads NVML (it needs cgo).
const TelemetryAvailable = true
