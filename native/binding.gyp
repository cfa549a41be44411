# The native kernels: one addon, with the x86 SIMD variants compiled as separate static libraries
# (each with its own -m flags) and chosen at run time by cpuid. Other architectures get the scalar code.
{
  "target_defaults": {
    "cflags_cc": ["-O3", "-std=c++17", "-fPIC", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "cflags_cc!": ["-fno-exceptions", "-O2", "-O0"],
    "cflags!": ["-O2", "-O0"],
    "xcode_settings": {"GCC_ENABLE_CPP_EXCEPTIONS": "YES", "OTHER_CPLUSPLUSFLAGS": ["-O3", "-std=c++17"]},
    "include_dirs": ["src"]
  },
  "conditions": [
    ["target_arch=='x64' and OS!='win'", {
      "targets": [
        {"target_name": "scalpel_avx2", "type": "static_library", "sources": ["src/kern_avx2.cc"],
         "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]},
        {"target_name": "scalpel_avx512", "type": "static_library", "sources": ["src/kern_avx512.cc"],
         "cflags_cc": ["-Wno-uninitialized", "-Wno-maybe-uninitialized", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c", "-mavx2"]},
        {"target_name": "scalpel_native",
         "sources": ["src/addon.cc", "src/pool.cc", "src/kern_scalar.cc", "src/ops.cc"],
         "cflags_cc": ["-fno-trapping-math"],
         "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
         "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8", "SCALPEL_X86=1"],
         "dependencies": ["scalpel_avx2", "scalpel_avx512"]}
      ]
    }, {
      "targets": [
        {"target_name": "scalpel_native",
         "sources": ["src/addon.cc", "src/pool.cc", "src/kern_scalar.cc", "src/ops.cc"],
         "cflags_cc": ["-fno-trapping-math"],
         "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
         "defines": ["NAPI_CPP_EXCEPTIONS", "NAPI_VERSION=8"]}
      ]
    }]
  ]
}
