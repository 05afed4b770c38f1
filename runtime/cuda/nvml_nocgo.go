//go:build !cgo

package cuda

import "fmt"

// ReadTelemetry needs go-nvml, which needs cgo: this build has none, so it
// always returns an error wrapping ErrNoDevice.
func ReadTelemetry(index int) (Telemetry, error) {
	return Telemetry{Index: index}, fmt.Errorf("%w: NVML telemetry needs a cgo build (CGO_ENABLED=1)", ErrNoDevice)
}

// TelemetryAvailable says whether this build reads NVML (it needs cgo).
const TelemetryAvailable = false
