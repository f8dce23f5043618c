# src/kernels: one ISA per translation unit. The file's suffix picks its target flags; files for
# another architecture are left out, so the same tree builds natively on x86-64 and aarch64.
# QE_ROOT lets a standalone project (scripts/test-aarch64.sh's cross build) include this file.
if(NOT DEFINED QE_ROOT)
  set(QE_ROOT ${CMAKE_CURRENT_SOURCE_DIR})
endif()
file(GLOB QE_KERNELS_ALL CONFIGURE_DEPENDS ${QE_ROOT}/src/kernels/*.cpp)

set(QE_KERNELS_SRC "")
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set(QE_ARCH_X86 ON)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64|ARM64")
  set(QE_ARCH_ARM64 ON)
endif()

foreach(src ${QE_KERNELS_ALL})
  if(src MATCHES "_avx2\\.cpp$")
    if(QE_ARCH_X86)
      # AVX2 level = AVX2 + FMA + F16C (+ BMI2), the bundle every AVX2 CPU since Haswell/Zen 1 has.
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c;-mbmi2")
      list(APPEND QE_KERNELS_SRC ${src})
    endif()
  elseif(src MATCHES "_avx512\\.cpp$")
    if(QE_ARCH_X86)
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx2;-mfma;-mf16c;-mbmi2")
      list(APPEND QE_KERNELS_SRC ${src})
    endif()
  elseif(src MATCHES "_avx512bf16\\.cpp$")
    if(QE_ARCH_X86)
      # The AVX-512 level plus AVX512_BF16 (vdpbf16ps): its kernels run only when CPUID lists BF16.
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mavx512bf16;-mavx2;-mfma;-mf16c;-mbmi2")
      list(APPEND QE_KERNELS_SRC ${src})
    endif()
  elseif(src MATCHES "_avx512gfni\\.cpp$")
    if(QE_ARCH_X86)
      # The AVX-512 level plus GFNI (gf2p8affineqb): its kernels run only when CPUID lists GFNI.
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS
        "-mavx512f;-mavx512bw;-mavx512vl;-mavx512dq;-mavx512vnni;-mgfni;-mavx2;-mfma;-mf16c;-mbmi2")
      list(APPEND QE_KERNELS_SRC ${src})
    endif()
  elseif(src MATCHES "_neon\\.cpp$")
    if(QE_ARCH_ARM64)
      set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "-march=armv8.2-a+dotprod+fp16")
      list(APPEND QE_KERNELS_SRC ${src})
    endif()
  elseif(src MATCHES "_x86\\.cpp$")
    if(QE_ARCH_X86)
      list(APPEND QE_KERNELS_SRC ${src})
    endif()
  elseif(src MATCHES "_arm64\\.cpp$")
    if(QE_ARCH_ARM64)
      list(APPEND QE_KERNELS_SRC ${src})
    endif()
  else()
    list(APPEND QE_KERNELS_SRC ${src})
  endif()
endforeach()

# hwloc counts physical cores and pins threads; without it (cross builds) threads.cpp reads sysfs.
option(QE_WITH_HWLOC "Use hwloc for the core count and thread pinning" ON)
if(QE_WITH_HWLOC AND NOT TARGET PkgConfig::HWLOC)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(HWLOC REQUIRED IMPORTED_TARGET hwloc)
endif()

# The fuzz build keeps ASan on the SIMD translation units but leaves out UBSan and the fuzzer's coverage
# there: with both, clang -O1 spends 8.5 min on matmul_x16_k_avx512.cpp alone (ASan only: 1 min), about
# 10 min of CI's fuzz build for code whose branches follow tensor shapes, not input bytes. The kernels'
# undefined behaviour is the unit tests' job under scripts/sanitize.sh, which keeps UBSan everywhere.
if(QE_FUZZ)
  foreach(src ${QE_KERNELS_SRC})
    if(src MATCHES "_avx2\\.cpp$|_avx512(bf16|gfni)?\\.cpp$")
      set_property(SOURCE ${src} APPEND PROPERTY COMPILE_OPTIONS -fno-sanitize=undefined,fuzzer-no-link)
    endif()
  endforeach()
endif()

# The sanitizer and fuzz builds instrument only the SIMD levels this CPU can run: a sanitizer reports code
# that runs, and the unit tests and fuzzers run a level only where the CPU has it. On an AVX2-only machine
# the AVX-512 files cost about 2.5 min of CI's ASan+UBSan build for nothing.
if((QE_SANITIZE OR QE_FUZZ) AND QE_ARCH_X86 AND EXISTS /proc/cpuinfo)
  file(READ /proc/cpuinfo qe_cpuinfo)
  foreach(level avx512 avx512bf16 avx512gfni)
    set(flags avx512f avx512bw avx512vl avx512dq avx512_vnni)
    if(level STREQUAL "avx512bf16")
      list(APPEND flags avx512_bf16)
    elseif(level STREQUAL "avx512gfni")
      list(APPEND flags gfni)
    endif()
    set(runs ON)
    foreach(flag ${flags})
      if(NOT qe_cpuinfo MATCHES " ${flag}[ \n]")
        set(runs OFF)
      endif()
    endforeach()
    if(NOT runs)
      foreach(src ${QE_KERNELS_SRC})
        if(src MATCHES "_${level}\\.cpp$")
          set_property(SOURCE ${src} APPEND PROPERTY COMPILE_OPTIONS -fno-sanitize=all)
        endif()
      endforeach()
    endif()
  endforeach()
endif()

add_library(qe_kernels STATIC ${QE_KERNELS_SRC})
target_link_libraries(qe_kernels PUBLIC qe_formats OpenMP::OpenMP_CXX PRIVATE qe_warnings)
if(QE_WITH_HWLOC)
  target_link_libraries(qe_kernels PRIVATE PkgConfig::HWLOC)
  target_compile_definitions(qe_kernels PRIVATE QE_HAVE_HWLOC)
endif()
