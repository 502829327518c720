#include "joulecut/measure/energy.h"

namespace joulecut::measure {

const char* provenance_name(Provenance p) { return p == Provenance::measured ? "measured" : "sampled"; }

}  // namespace joulecut::measure
