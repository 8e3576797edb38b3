// render: renders a Helm chart's templates the way `helm template` does, offline and without
// Helm. It parses every file of templates/ with Go's text/template plus the sprig functions Helm
// ships, and supplies the Helm built-ins the Profilis chart uses: .Values (values.yaml deep-merged
// with each -f file in order, a null removing a key), .Release, .Chart (from Chart.yaml),
// .Capabilities (a fixed Kubernetes version), .Template, and the functions include, tpl,
// required, toYaml, fromYaml, toJson and fromJson. Output: every rendered document, split on
// `---`, empty ones dropped, either to stdout (with `# Source:` lines, like helm) or one file per
// template into -out. -values-out writes the merged values as JSON (for schema validation).
//
// Build offline in GOPATH mode (Debian's golang-go, golang-github-masterminds-sprig-dev and
// golang-gopkg-yaml.v3-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o render tests/helm/render.go
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// normalize turns what yaml.v3 decodes into plain map[string]interface{} trees (it already does
// for string keys; other key types are stringified as Helm's JSON round trip would).
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[string]interface{}:
		for k, e := range t {
			t[k] = normalize(e)
		}
		return t
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = normalize(e)
		}
		return m
	case []interface{}:
		for i, e := range t {
			t[i] = normalize(e)
		}
		return t
	}
	return v
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var m map[string]interface{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return normalize(m).(map[string]interface{}), nil
}

// mergeValues merges src over dst as Helm merges -f files: maps recursively, anything else
// replaced, and a null in src deleting the key.
func mergeValues(dst, src map[string]interface{}) map[string]interface{} {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		sm, sIsMap := sv.(map[string]interface{})
		dm, dIsMap := dst[k].(map[string]interface{})
		if sIsMap && dIsMap {
			dst[k] = mergeValues(dm, sm)
		} else {
			dst[k] = sv
		}
	}
	return dst
}

// chartMeta maps Chart.yaml's keys to the field names templates use (.Chart.AppVersion).
func chartMeta(m map[string]interface{}) map[string]interface{} {
	names := map[string]string{"apiVersion": "APIVersion", "appVersion": "AppVersion",
		"kubeVersion": "KubeVersion"}
	out := map[string]interface{}{}
	for k, v := range m {
		n, ok := names[k]
		if !ok {
			n = strings.ToUpper(k[:1]) + k[1:]
		}
		out[n] = v
	}
	return out
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	enc.Close()
	return strings.TrimSuffix(buf.String(), "\n")
}

func fromYAML(s string) map[string]interface{} {
	var m map[string]interface{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return normalize(m).(map[string]interface{})
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

type renderer struct {
	tpl      *template.Template
	top      map[string]interface{}
	chartDir string
}

// funcs: sprig minus what Helm removes (env, expandenv), plus Helm's own functions. include
// and tpl close over the template set, so they are bound after parsing (see bind).
func (r *renderer) funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = toYAML
	f["fromYaml"] = fromYAML
	f["toJson"] = toJSON
	f["fromJson"] = fromJSON
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, errors.New(msg)
		}
		return v, nil
	}
	f["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		if err := r.tpl.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := r.tpl.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["lookup"] = func(...interface{}) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil // like `helm template`: no cluster
	}
	return f
}

// withTemplate is the top-level object as one template sees it (.Template.Name differs).
func (r *renderer) withTemplate(name string) map[string]interface{} {
	d := map[string]interface{}{}
	for k, v := range r.top {
		d[k] = v
	}
	d["Template"] = map[string]interface{}{"Name": name,
		"BasePath": path.Join(r.top["Chart"].(map[string]interface{})["Name"].(string), "templates")}
	return d
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// documents splits rendered text and drops documents holding only blanks and comments.
func documents(text string) []string {
	var out []string
	for _, d := range docSep.Split(text, -1) {
		empty := true
		for _, l := range strings.Split(d, "\n") {
			t := strings.TrimSpace(l)
			if t != "" && !strings.HasPrefix(t, "#") {
				empty = false
				break
			}
		}
		if !empty {
			out = append(out, strings.Trim(d, "\n")+"\n")
		}
	}
	return out
}

func run() error {
	var files valueFiles
	chartDir := flag.String("chart", "", "chart directory (holds Chart.yaml)")
	name := flag.String("name", "release", "release name")
	namespace := flag.String("namespace", "default", "release namespace")
	kube := flag.String("kube-version", "v1.29.0", "Kubernetes version for .Capabilities")
	service := flag.String("release-service", "Helm", ".Release.Service (app.kubernetes.io/managed-by)")
	outDir := flag.String("out", "", "write one file per template into this directory")
	header := flag.String("header", "", "comment line written at the top of each -out file")
	valuesOut := flag.String("values-out", "", "write the merged values here as JSON")
	flag.Var(&files, "f", "values file merged over values.yaml (repeatable, in order)")
	flag.Parse()
	if *chartDir == "" {
		return errors.New("usage: render -chart DIR [-f values.yaml]... [-name N] [-namespace NS] [-out DIR]")
	}

	chart, err := readYAMLMap(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAMLMap(filepath.Join(*chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		m, err := readYAMLMap(f)
		if err != nil {
			return err
		}
		values = mergeValues(values, m)
	}
	if *valuesOut != "" {
		b, err := json.MarshalIndent(values, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*valuesOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	meta := chartMeta(chart)
	kv := strings.TrimPrefix(*kube, "v")
	parts := strings.SplitN(kv, ".", 3)
	r := &renderer{chartDir: *chartDir, top: map[string]interface{}{
		"Values": values,
		"Chart":  meta,
		"Release": map[string]interface{}{"Name": *name, "Namespace": *namespace,
			"Service": *service, "IsInstall": true, "IsUpgrade": false, "Revision": 1},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": *kube, "Major": parts[0],
				"Minor": parts[1], "GitVersion": *kube},
			"APIVersions": apiVersions{},
		},
		"Files": map[string]interface{}{},
	}}

	// Every file under templates/ is parsed under its chart-relative name, as Helm does, so
	// `include (print $.Template.BasePath "/configmap.yaml") .` finds it.
	tdir := filepath.Join(*chartDir, "templates")
	var names []string
	r.tpl = template.New("chart").Option("missingkey=zero").Funcs(r.funcs())
	err = filepath.Walk(tdir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(*chartDir, p)
		tname := path.Join(meta["Name"].(string), filepath.ToSlash(rel))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := r.tpl.New(tname).Parse(string(b)); err != nil {
			return err
		}
		names = append(names, tname)
		return nil
	})
	if err != nil {
		return err
	}
	// NOTES.txt last, as helm prints it after the manifests.
	sort.Slice(names, func(i, j int) bool {
		ni, nj := path.Base(names[i]) == "NOTES.txt", path.Base(names[j]) == "NOTES.txt"
		if ni != nj {
			return nj
		}
		return names[i] < names[j]
	})

	if *outDir != "" {
		if err := os.MkdirAll(*outDir, 0o755); err != nil {
			return err
		}
	}
	for _, tname := range names {
		base := path.Base(tname)
		if strings.HasPrefix(base, "_") {
			continue // partials define templates, render nothing
		}
		var buf bytes.Buffer
		if err := r.tpl.ExecuteTemplate(&buf, tname, r.withTemplate(tname)); err != nil {
			return err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" {
			if *outDir == "" {
				fmt.Fprintf(os.Stderr, "NOTES:\n%s\n", text)
			} else if err := os.WriteFile(filepath.Join(*outDir, "NOTES.txt"),
				[]byte(strings.TrimSpace(text)+"\n"), 0o644); err != nil {
				return err
			}
			continue
		}
		docs := documents(text)
		if len(docs) == 0 {
			continue
		}
		if *outDir == "" {
			for _, d := range docs {
				fmt.Printf("---\n# Source: %s\n%s", tname, d)
			}
			continue
		}
		var out strings.Builder
		if *header != "" {
			out.WriteString("# " + *header + "\n")
		}
		for i, d := range docs {
			if i > 0 || *header != "" {
				out.WriteString("---\n")
			}
			out.WriteString(d)
		}
		if err := os.WriteFile(filepath.Join(*outDir, base), []byte(out.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// apiVersions answers .Capabilities.APIVersions.Has: the built-in groups of a current
// cluster, and no CRDs (so a chart gating a ServiceMonitor on it renders it only when asked).
type apiVersions struct{}

func (apiVersions) Has(v string) bool {
	switch v {
	case "v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1":
		return true
	}
	return false
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}
