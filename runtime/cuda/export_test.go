package cuda

// NewFakeDriver returns the fake driver (fake_test.go) for the external
// tests, which run the engine on it (device.Options.CUDADriver).
func NewFakeDriver() Driver { return newFake() }
