// Filled by the measurement harness (runner, meters, reports).
namespace joulecut::measure {}
