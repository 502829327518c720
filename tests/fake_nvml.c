/* A stand-in for libnvidia-ml.so.1 that exercises joulecut's real NVML reading code.
   FAKE_NVML_MODE (read at nvmlInit_v2): "counter" (default): total-energy counter that
   advances 250 mJ per read; "no-counter": energy unsupported, power usage 100 W constant
   (a pre-Volta GPU); "init-fails": nvmlInit_v2 returns NVML_ERROR_DRIVER_NOT_LOADED. */
#include <stdlib.h>
#include <string.h>

static int mode = 0; /* 0 counter, 1 no-counter, 2 init-fails */
static unsigned long long energy_mj = 1000000ULL;
static int device_token = 42;

int nvmlInit_v2(void) {
  const char* m = getenv("FAKE_NVML_MODE");
  mode = 0;
  if (m && strcmp(m, "no-counter") == 0) mode = 1;
  if (m && strcmp(m, "init-fails") == 0) mode = 2;
  energy_mj = 1000000ULL;
  return mode == 2 ? 9 : 0;
}
int nvmlShutdown(void) { return 0; }
const char* nvmlErrorString(int code) {
  switch (code) {
    case 0: return "Success";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 9: return "Driver Not Loaded";
    default: return "Unknown Error";
  }
}
int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** device) {
  if (index != 0) return 2;
  *device = &device_token;
  return 0;
}
int nvmlDeviceGetName(void* device, char* name, unsigned length) {
  (void)device;
  strncpy(name, "Fake GPU", length);
  return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void* device, unsigned long long* mj) {
  (void)device;
  if (mode == 1) return 3;
  energy_mj += 250;
  *mj = energy_mj;
  return 0;
}
int nvmlDeviceGetPowerUsage(void* device, unsigned* mw) {
  (void)device;
  *mw = 100000;
  return 0;
}
