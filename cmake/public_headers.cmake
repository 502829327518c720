# The installed API: the headers docs/api.md promises (the umbrella joulecut/joulecut.h and what
# the page names) and the headers they include, no others. Everything else under */include stays
# in the build tree: the runtime ops' kernels, the pass internals' headers, the CLI's helpers.
set(JOULECUT_PUBLIC_HEADERS
  joulecut/joulecut.h
  # common
  joulecut/error.h joulecut/atomic_file.h joulecut/platform.h joulecut/text.h
  # compress: models, data, passes, pipelines
  joulecut/model.h joulecut/data.h joulecut/data_source.h joulecut/dataset_spec.h joulecut/input_spec.h
  joulecut/model_input.h joulecut/fidelity.h joulecut/evaluate.h joulecut/graph_stats.h joulecut/threads.h
  joulecut/npy.h joulecut/cifar.h joulecut/image.h joulecut/train_loop.h
  joulecut/pass.h joulecut/pass_options.h joulecut/timing.h joulecut/freeze.h joulecut/pipeline.h joulecut/pipeline_text.h
  joulecut/recipe.h joulecut/prune.h joulecut/quantize.h joulecut/distill.h
  joulecut/int8_cuda.h
  # measure
  joulecut/measure/runner.h joulecut/measure/measure_files.h joulecut/measure/report.h joulecut/measure/energy.h
  joulecut/measure/energy_model.h joulecut/measure/manifest.h joulecut/measure/meter.h joulecut/measure/stats.h)

# Installs JOULECUT_PUBLIC_HEADERS from the include roots, and fails the configure step when the
# set is not closed (an installed header includes one that is not) or when docs/api.md names a
# header that is not installed.
function(joulecut_install_public_headers)
  set(problems "")
  foreach(header ${JOULECUT_PUBLIC_HEADERS})
    set(found "")
    foreach(root ${JOULECUT_INCLUDE_ROOTS})
      if(EXISTS "${root}/${header}")
        set(found "${root}/${header}")
      endif()
    endforeach()
    if(NOT found)
      list(APPEND problems "${header} is listed but not found under the include roots")
      continue()
    endif()
    get_filename_component(dir "${header}" DIRECTORY)
    install(FILES "${found}" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/${dir})
    file(STRINGS "${found}" includes REGEX "^#include [\"<]joulecut/")
    foreach(line ${includes})
      string(REGEX REPLACE "^#include [\"<]([^\">]+)[\">].*" "\\1" included "${line}")
      if(NOT included IN_LIST JOULECUT_PUBLIC_HEADERS AND NOT included STREQUAL "joulecut/version.h")
        list(APPEND problems "${header} includes ${included}, which is not installed")
      endif()
    endforeach()
  endforeach()
  file(READ "${PROJECT_SOURCE_DIR}/docs/api.md" api)
  string(REGEX MATCHALL "`[a-z_0-9/]+\\.h`" named "${api}")
  foreach(name ${named})
    string(REPLACE "`" "" name "${name}")
    if(NOT "joulecut/${name}" IN_LIST JOULECUT_PUBLIC_HEADERS AND NOT "joulecut/measure/${name}" IN_LIST JOULECUT_PUBLIC_HEADERS)
      list(APPEND problems "docs/api.md names ${name}, which is not installed")
    endif()
  endforeach()
  if(problems)
    list(JOIN problems "\n  " text)
    message(FATAL_ERROR "joulecut: the installed headers (cmake/public_headers.cmake):\n  ${text}")
  endif()
  list(LENGTH JOULECUT_PUBLIC_HEADERS count)
  message(STATUS "joulecut: ${count} public headers installed, the ones docs/api.md promises")
endfunction()
