# profilis-span-ir: a steady-state span loop to count instructions under callgrind (see the
# comment at the top of span_ir.c). Public API only.
add_executable(profilis-span-ir ${CMAKE_SOURCE_DIR}/bench/span_ir.c)
target_link_libraries(profilis-span-ir PRIVATE profilis_static)
