# Finds LibTorch for joulecut and for projects that use the installed joulecut (the same one).
#
# TorchConfig finds its libraries with find_library(... PATHS <its prefix>/lib), which searches the
# system first: with Debian's LibTorch also installed, a build against PyPI's LibTorch linked
# Debian's libtorch.so and libc10.so.1.13 beside PyPI's libraries (two c10s in one process: heap
# corruption seen here). Each is pointed at the LibTorch being used before TorchConfig runs.
macro(joulecut_find_torch)
  set(_joulecut_torch_roots "")
  if(Torch_DIR)
    list(APPEND _joulecut_torch_roots "${Torch_DIR}/../../..")
  endif()
  foreach(_prefix ${CMAKE_PREFIX_PATH})
    if(EXISTS "${_prefix}/Torch/TorchConfig.cmake")
      list(APPEND _joulecut_torch_roots "${_prefix}/../..")
    endif()
  endforeach()
  foreach(_root ${_joulecut_torch_roots})
    if(EXISTS "${_root}/lib/libc10.so")
      # Its own Caffe2 (and other) package configs too, not the system's.
      if(EXISTS "${_root}/share/cmake/Caffe2/Caffe2Config.cmake")
        get_filename_component(_cmake_dir "${_root}/share/cmake" REALPATH)
        list(PREPEND CMAKE_PREFIX_PATH "${_cmake_dir}")
        set(Caffe2_DIR "${_cmake_dir}/Caffe2" CACHE PATH "Caffe2 of the LibTorch being used" FORCE)
      endif()
      foreach(_pair "TORCH_LIBRARY:torch" "torch_cpu_LIBRARY:torch_cpu" "torch_cuda_LIBRARY:torch_cuda"
                    "c10_LIBRARY:c10" "C10_CUDA_LIBRARY:c10_cuda" "CAFFE2_NVRTC_LIBRARY:caffe2_nvrtc"
                    "kineto_LIBRARY:kineto")
        string(REPLACE ":" ";" _pair "${_pair}")
        list(GET _pair 0 _variable)
        list(GET _pair 1 _name)
        if(EXISTS "${_root}/lib/lib${_name}.so")
          get_filename_component(_path "${_root}/lib/lib${_name}.so" REALPATH)
          set(${_variable} "${_path}" CACHE FILEPATH "lib${_name} of the LibTorch being used" FORCE)
        endif()
      endforeach()
      break()
    endif()
  endforeach()
  find_package(Torch REQUIRED)
endmacro()
