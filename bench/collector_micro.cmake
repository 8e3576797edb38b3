# profilis-collector-micro: per-stage CPU cost of the collector's hot path (decode, span
# metrics, JSONL rendering) on one thread. It reaches collector internals and the tests'
# record builder, so it links the collector core and includes tests/unit.
if(EXISTS ${CMAKE_SOURCE_DIR}/collector/collector.cmake)
  add_executable(profilis-collector-micro ${CMAKE_SOURCE_DIR}/bench/collector_micro.c)
  target_include_directories(profilis-collector-micro PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
  target_link_libraries(profilis-collector-micro PRIVATE profilis_collector_core)
endif()
