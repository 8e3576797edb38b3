# Deployment artefacts (issue 6): the Helm chart rendered by a real Go text/template + sprig
# engine (tests/helm/render.go, built offline in GOPATH mode from Debian's Go packages) and
# checked per kind, its collector config run through `profilis-collector validate`, deploy/k8s/
# kept in sync with the chart; the Dockerfile linted statically (no docker here) with its
# HEALTHCHECK run against a live collector; the Grafana dashboards' PromQL checked against the
# collector's real /metrics.
if(NOT TARGET profilis-collector)
  return()
endif()
set(HELM_RENDER ${CMAKE_BINARY_DIR}/tests/helm-render)
add_test(NAME setup.helm_render
  COMMAND sh -c "command -v go >/dev/null || { echo 'go missing: run scripts/deps.sh (golang-go)'; exit 1; }; cd ${CMAKE_SOURCE_DIR}/tests/helm && GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE=${CMAKE_BINARY_DIR}/go-cache go build -o ${HELM_RENDER} render.go")
set_tests_properties(setup.helm_render PROPERTIES FIXTURES_SETUP helm_render LABELS integration
  TIMEOUT 300)
add_test(NAME integration.helm_chart
  COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/helm/check.py --render ${HELM_RENDER}
    --collector $<TARGET_FILE:profilis-collector> --src ${CMAKE_SOURCE_DIR})
set_tests_properties(integration.helm_chart PROPERTIES FIXTURES_REQUIRED helm_render
  LABELS integration TIMEOUT 120)
add_test(NAME integration.dockerfile
  COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/deploy/check_dockerfile.py ${CMAKE_SOURCE_DIR}
    $<TARGET_FILE:profilis-collector>)
set_tests_properties(integration.dockerfile PROPERTIES LABELS integration TIMEOUT 120)
add_test(NAME integration.grafana_dashboards
  COMMAND /usr/bin/python3 ${CMAKE_SOURCE_DIR}/tests/deploy/check_grafana.py ${CMAKE_SOURCE_DIR}
    $<TARGET_FILE:profilis-collector>)
set_tests_properties(integration.grafana_dashboards PROPERTIES LABELS integration TIMEOUT 120)
