#include "coordinator/random_state.h"
