# bpf_object(<name> <source.bpf.c>)
#
# Compiles a BPF program with clang and generates its libbpf skeleton with
# bpftool. Defines an INTERFACE target <name>_skel whose include directory
# holds <name>.skel.h. Nothing leaks out of the function but the target.
find_program(BPF_CLANG NAMES clang-14 clang REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /sbin REQUIRED)

function(bpf_object name source)
  set(out_dir "${CMAKE_CURRENT_BINARY_DIR}/bpf")
  set(obj "${out_dir}/${name}.bpf.o")
  set(skel "${out_dir}/${name}.skel.h")
  get_filename_component(src_abs "${source}" ABSOLUTE)

  # The host's include directories go after ours (-idirafter) so that
  # asm/types.h resolves without pulling in userspace headers first.
  add_custom_command(
    OUTPUT "${obj}"
    COMMAND "${CMAKE_COMMAND}" -E make_directory "${out_dir}"
    COMMAND "${BPF_CLANG}" -g -O2 -target bpf -D__TARGET_ARCH_x86
            -Wall -Werror
            -I "${PROJECT_SOURCE_DIR}/vmlinux"
            -I "${PROJECT_SOURCE_DIR}/include"
            -I "${PROJECT_SOURCE_DIR}/bpf"
            -idirafter /usr/include/x86_64-linux-gnu
            -idirafter /usr/include
            -c "${src_abs}" -o "${obj}"
    DEPENDS "${src_abs}"
            "${PROJECT_SOURCE_DIR}/include/svcmap/bpf_abi.h"
            ${SVCMAP_BPF_HEADERS}
    COMMENT "BPF ${name}"
    VERBATIM)

  add_custom_command(
    OUTPUT "${skel}"
    COMMAND "${BPFTOOL}" gen skeleton "${obj}" name "${name}_bpf" > "${skel}"
    DEPENDS "${obj}"
    COMMENT "skeleton ${name}"
    VERBATIM)

  add_custom_target(${name}_skel_gen DEPENDS "${skel}")
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE "${out_dir}")
endfunction()
