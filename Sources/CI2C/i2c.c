// Nothing to compile: CI2C only brings the kernel's i2c-dev headers to Swift.
#include "CI2C.h"
