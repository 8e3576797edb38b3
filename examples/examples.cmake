# Example programs. They use only the public API and link the shared library, as a user's
# program would.
foreach(ex quickstart demo)
  add_executable(profilis-${ex} ${CMAKE_SOURCE_DIR}/examples/${ex}.c)
  target_link_libraries(profilis-${ex} PRIVATE profilis)
endforeach()
