# The collector: a static core library (everything but main.c, so tests can link it) and the
# profilis-collector binary.
pkg_check_modules(MHD REQUIRED IMPORTED_TARGET libmicrohttpd)
pkg_check_modules(YAML REQUIRED IMPORTED_TARGET yaml-0.1)
# The HTTP receiver makes GnuTLS (libmicrohttpd's TLS library) require and verify client
# certificates for mTLS.
pkg_check_modules(GNUTLS REQUIRED IMPORTED_TARGET gnutls)
# The durable queue in front of each exporter (collector/dqueue.c) is an LMDB database.
pkg_check_modules(LMDB REQUIRED IMPORTED_TARGET lmdb)

file(GLOB PC_SRCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/collector/*.c)
list(REMOVE_ITEM PC_SRCS ${CMAKE_SOURCE_DIR}/collector/main.c)
if(NOT PC_SRCS)
  return()
endif()
add_library(profilis_collector_core STATIC ${PC_SRCS})
target_include_directories(profilis_collector_core PUBLIC ${CMAKE_SOURCE_DIR}/collector)
target_link_libraries(profilis_collector_core PUBLIC profilis_static PkgConfig::MHD
  PkgConfig::YAML PkgConfig::GNUTLS PkgConfig::LMDB PkgConfig::NGHTTP2 PkgConfig::OPENSSL PkgConfig::ZLIB Threads::Threads m)
target_compile_definitions(profilis_collector_core PRIVATE PROFILIS_BUILDING=1)

if(EXISTS ${CMAKE_SOURCE_DIR}/collector/main.c)
  add_executable(profilis-collector ${CMAKE_SOURCE_DIR}/collector/main.c)
  target_link_libraries(profilis-collector PRIVATE profilis_collector_core)
  install(TARGETS profilis-collector RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

# Collector unit tests: tests/unit/collector/test_<module>.c
file(GLOB PC_UNIT_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/unit/collector/test_*.c)
if(PROFILIS_TESTS)
  pkg_check_modules(CMOCKA REQUIRED IMPORTED_TARGET cmocka)
  foreach(src ${PC_UNIT_TESTS})
    get_filename_component(name ${src} NAME_WE)
    add_executable(pc_${name} ${src})
    target_include_directories(pc_${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
    target_link_libraries(pc_${name} PRIVATE profilis_collector_core profilis_proto PkgConfig::CMOCKA)
    set_target_properties(pc_${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
    add_test(NAME unit.collector.${name} COMMAND pc_${name})
    set_tests_properties(unit.collector.${name} PROPERTIES LABELS unit TIMEOUT 120)
  endforeach()
endif()
