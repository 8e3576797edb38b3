# Benchmark tools. profilis-loadgen uses only the public API; profilis-bench also calls a few
# internal functions (the OTLP encoder, a capturing exporter) and counts allocations by
# wrapping the allocator at link time, so it links the static library.
add_executable(profilis-loadgen ${CMAKE_SOURCE_DIR}/bench/loadgen.c)
target_link_libraries(profilis-loadgen PRIVATE profilis_static)

add_executable(profilis-bench ${CMAKE_SOURCE_DIR}/bench/bench.c)
target_link_libraries(profilis-bench PRIVATE profilis_static PkgConfig::NGHTTP2)
target_link_options(profilis-bench PRIVATE
  "LINKER:--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=posix_memalign"
  "LINKER:--wrap=aligned_alloc,--wrap=strdup,--wrap=strndup")
