# Run at build time (not configure time), so the revision in every manifest is the one the
# binaries were built from; "-dirty" marks a build from a tree with uncommitted changes.
# Inputs: SOURCE_DIR, OUTPUT, TEMPLATE, PROJECT_VERSION, CMAKE_CXX_COMPILER_ID, CMAKE_CXX_COMPILER_VERSION.
execute_process(COMMAND git rev-parse --short=12 HEAD WORKING_DIRECTORY ${SOURCE_DIR}
                OUTPUT_VARIABLE JOULECUT_GIT_REVISION OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT JOULECUT_GIT_REVISION)
  set(JOULECUT_GIT_REVISION "unknown")
else()
  execute_process(COMMAND git status --porcelain --untracked-files=no WORKING_DIRECTORY ${SOURCE_DIR}
                  OUTPUT_VARIABLE changes OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(changes)
    string(APPEND JOULECUT_GIT_REVISION "-dirty")
  endif()
endif()
configure_file(${TEMPLATE} ${OUTPUT}.tmp @ONLY)
# Only a changed revision touches the header, so unchanged builds recompile nothing.
file(COPY_FILE ${OUTPUT}.tmp ${OUTPUT} ONLY_IF_DIFFERENT)
