package cuda

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
)

func TestMissingDriverLibrary(t *testing.T) {
	_, err := openDriver([]string{"libcuda-not-here.so.1"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v does not wrap ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "libcuda-not-here.so.1") || strings.Contains(err.Error(), "\n") {
		t.Errorf("error should name the library on one line: %q", err)
	}
}

func TestErrorNames(t *testing.T) {
	// Without a driver the names come from the built-in table.
	var d *driver
	if got := d.check("cuMemAlloc", 2).Error(); got != "cuda: cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY (2)" {
		t.Errorf("driver error: %q", got)
	}
	if d.check("cuInit", 0) != nil {
		t.Error("success reported as an error")
	}
	if got := cublasCheck("cublasGemmEx", 15).Error(); got != "cuda: cublasGemmEx: CUBLAS_STATUS_NOT_SUPPORTED (15)" {
		t.Errorf("cuBLAS error: %q", got)
	}
	var e *Error
	if !errors.As(d.check("cuLaunchKernel", 719), &e) || e.Name != "CUDA_ERROR_LAUNCH_FAILED" || e.Call != "cuLaunchKernel" {
		t.Errorf("error fields: %+v", e)
	}
}

// TestOpen: on a machine without a GPU, Open fails with one line wrapping
// ErrUnavailable; with one, it names the device.
func TestOpen(t *testing.T) {
	dev, err := testDevice()
	if err != nil {
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Open: %v (should wrap ErrUnavailable)", err)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
		return
	}
	if dev.Name == "" || dev.TotalMem == 0 || dev.SMs == 0 {
		t.Errorf("device %+v", dev)
	}
	t.Logf("%s: %d SMs, compute capability %d.%d, %.1f GiB", dev.Name, dev.SMs, dev.CC[0], dev.CC[1], float64(dev.TotalMem)/(1<<30))
}

var (
	devOnce   sync.Once
	devShared *Device
	devErr    error
)

func testDevice() (*Device, error) {
	devOnce.Do(func() { devShared, devErr = Open(0) })
	return devShared, devErr
}

// gpu returns the test GPU or skips the test; with JAMBA_REQUIRE_GPU set
// (runs on a machine that must have one) a missing GPU fails instead.
func gpu(t *testing.T) *Device {
	t.Helper()
	dev, err := testDevice()
	if err != nil {
		if os.Getenv("JAMBA_REQUIRE_GPU") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return dev
}
