package main

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

const shippedDir = "../../deploy/k8s"

func render(t *testing.T) [][]byte {
	t.Helper()
	docs, err := Render(shippedDir)
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// The shipped manifests pass every check, the flag check included when the
// binaries are at hand ($FULCRUM_BIN_DIR, set by ./test.sh to bazel-bin).
func TestShippedManifestsAreValid(t *testing.T) {
	docs := render(t)
	kinds := map[string]int{}
	for _, doc := range docs {
		o, err := Decode(doc)
		if err != nil {
			t.Fatal(err)
		}
		kinds[o.Kind]++
	}
	for _, kind := range []string{"StatefulSet", "Service", "Job", "ConfigMap", "Secret", "PodDisruptionBudget", "PersistentVolumeClaim"} {
		if kinds[kind] == 0 {
			t.Errorf("the manifests hold no %s", kind)
		}
	}
	for _, err := range Check(docs, os.Getenv("FULCRUM_BIN_DIR")) {
		t.Error(err)
	}
}

func TestShippedFlagsAreKnownToTheBinaries(t *testing.T) {
	binDir := os.Getenv("FULCRUM_BIN_DIR")
	if binDir == "" {
		t.Skip("FULCRUM_BIN_DIR (the folder holding server/ps_server and worker/worker) is not set")
	}
	docs := render(t)
	objects := decodeAll(t, docs)
	for _, err := range checkFlags(objects, binDir) {
		t.Error(err)
	}
	if err := checkCoordinatorStarts(objects, binDir); err != nil {
		t.Error(err)
	}
	// ... and the checks do look: a misspelt flag is caught, and so is a
	// value ps_server refuses or a job file it cannot parse.
	bad := mutate(t, docs, "kind: StatefulSet", "- --num_shards=2", "- --num_shard=2")
	errs := checkFlags(decodeAll(t, bad), binDir)
	if !containsError(errs, "does not know the flag --num_shard") {
		t.Errorf("a misspelt flag passed: %v", errs)
	}
	for _, c := range []struct{ marker, old, new, want string }{
		{"kind: StatefulSet", "--checkpoint_every=30s", "--checkpoint_every=30x", "--checkpoint_every=30x"},
		{"kind: ConfigMap", "mode: SYNC", "mode: SYNCHRONOUS", "SYNCHRONOUS"},
	} {
		err := checkCoordinatorStarts(decodeAll(t, mutate(t, docs, c.marker, c.old, c.new)), binDir)
		if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want ps_server to exit naming %q, got %v", c.new, c.want, err)
		}
	}
}

func decodeAll(t *testing.T, docs [][]byte) []Object {
	t.Helper()
	var objects []Object
	for _, doc := range docs {
		o, err := Decode(doc)
		if err != nil {
			t.Fatal(err)
		}
		objects = append(objects, o)
	}
	return objects
}

// mutate returns a copy of docs in which the document containing marker has
// its first `old` replaced by `new`.
func mutate(t *testing.T, docs [][]byte, marker, old, new string) [][]byte {
	t.Helper()
	out := make([][]byte, len(docs))
	done := false
	for i, doc := range docs {
		out[i] = doc
		if !done && bytes.Contains(doc, []byte(marker)) && bytes.Contains(doc, []byte(old)) {
			out[i] = bytes.Replace(doc, []byte(old), []byte(new), 1)
			done = true
		}
	}
	if !done {
		t.Fatalf("no manifest with %q holds %q", marker, old)
	}
	return out
}

func containsError(errs []error, want string) bool {
	for _, err := range errs {
		if strings.Contains(err.Error(), want) {
			return true
		}
	}
	return false
}

// Each broken copy of the shipped manifests is refused, with a message
// naming the problem.
func TestBrokenManifestsAreRefused(t *testing.T) {
	docs := render(t)
	cases := []struct {
		name, marker, old, new, want string
	}{
		{"unknown field", "kind: StatefulSet", "podManagementPolicy: Parallel",
			"podManagementPolicy: Parallel\n  podManagmentPolicy: Parallel", `unknown field "podManagmentPolicy"`},
		{"unknown field in a container", "kind: Job", "imagePullPolicy: IfNotPresent",
			"imagePullPolicy: IfNotPresent\n        imagePullPolicyy: Always", `unknown field "imagePullPolicyy"`},
		{"duplicated field", "kind: StatefulSet", "replicas: 2", "replicas: 2\n  replicas: 3", `key "replicas" already set`},
		{"wrong type", "kind: StatefulSet", "replicas: 2", `replicas: two`, "cannot unmarshal string"},
		{"wrong type in a list", "kind: Job", "parallelism: 3", "parallelism: [3]", "cannot unmarshal array"},
		{"missing image", "kind: Job", "image: fulcrum:latest", "workingDir: /", "spec.template.spec.containers[0].image: Required value"},
		{"missing container name", "kind: Job", "name: worker\n", "tty: false\n", "spec.template.spec.containers[0].name: Required value"},
		{"missing selector", "kind: PodDisruptionBudget", "  selector:\n    matchLabels:\n      app.kubernetes.io/name: fulcrum-ps\n", "", "selects no pod"},
		{"selector not matching the template", "kind: StatefulSet", "app.kubernetes.io/name: fulcrum-ps\n  serviceName:",
			"app.kubernetes.io/name: fulcrum-shard\n  serviceName:", "`selector` does not match template `labels`"},
		{"bad restart policy for a Job", "kind: Job", "restartPolicy: OnFailure", "restartPolicy: Always", "spec.template.spec.restartPolicy"},
		{"invalid name", "kind: ConfigMap", "name: fulcrum-job", "name: Fulcrum_Job", "metadata.name: Invalid value"},
		{"two probe handlers", "kind: StatefulSet", "readinessProbe:\n          grpc:\n            port: 50051",
			"readinessProbe:\n          tcpSocket:\n            port: 50051\n          grpc:\n            port: 50051", "may not specify more than 1 handler type"},
		{"unknown kind", "kind: ConfigMap", "apiVersion: v1", "apiVersion: v2", "not a kind these manifests may use"},
		{"missing ConfigMap", "kind: StatefulSet", "name: fulcrum-job", "name: fulcrum-jobs", `no ConfigMap "fulcrum-jobs"`},
		{"missing Secret", "kind: Job", "secretName: fulcrum-token", "secretName: token", `no Secret "token"`},
		{"missing ConfigMap key", "kind: StatefulSet", "configMap:\n          name: fulcrum-job",
			"configMap:\n          items:\n          - key: job.pbtxt\n            path: job.textproto\n          name: fulcrum-job", `ConfigMap "fulcrum-job" has no key "job.pbtxt"`},
		{"missing Secret key", "kind: Job", "secret:\n          defaultMode: 288\n          secretName: fulcrum-token",
			"secret:\n          defaultMode: 288\n          items:\n          - key: bearer\n            path: token\n          secretName: fulcrum-token", `Secret "fulcrum-token" has no key "bearer"`},
		{"missing claim", "kind: Job", "claimName: fulcrum-data", "claimName: data", `no PersistentVolumeClaim "data"`},
		{"mount of no volume", "kind: StatefulSet", "- mountPath: /checkpoints\n          name: checkpoints",
			"- mountPath: /checkpoints\n          name: checkpoint", `mounts "checkpoint"`},
		{"undefined variable", "kind: StatefulSet", "$(SHARD_INDEX)", "$(SHARD_NUMBER)", "$(SHARD_NUMBER), which its env does not define"},
		{"Service not headless", "kind: Service", "clusterIP: None", "clusterIP: \"\"", "is not headless"},
		{"Service selecting nothing", "kind: Service", "selector:\n    app.kubernetes.io/name: fulcrum-ps\n", "selector:\n    app.kubernetes.io/name: fulcrum-pss\n", "selects no pod"},
		{"Service port not on the pods", "kind: Service", "targetPort: metrics", "targetPort: prometheus", `target port prometheus`},
		{"root user", "kind: Job", "runAsUser: 65534", "runAsUser: 0", "runs as root"},
		{"writable root file system", "kind: StatefulSet", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "root file system not read-only"},
		{"no memory limit", "kind: Job", "memory: 2Gi", "ephemeral-storage: 2Gi", "no memory limit"},
		{"no gRPC probe on the shards", "kind: StatefulSet", "livenessProbe:\n          failureThreshold: 6\n          grpc:\n            port: 50051",
			"livenessProbe:\n          failureThreshold: 6\n          tcpSocket:\n            port: 50051", "readiness and liveness probes on the gRPC health service"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errs := Check(mutate(t, docs, c.marker, c.old, c.new), "")
			if !containsError(errs, c.want) {
				t.Errorf("want an error containing %q, got %v", c.want, errors.Join(errs...))
			}
		})
	}
}

// A file in deploy/k8s that the kustomization does not list is an error:
// it would be neither applied nor checked.
func TestUnlistedManifestIsRefused(t *testing.T) {
	dir := t.TempDir()
	files, err := os.ReadDir(shippedDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(shippedDir + "/" + f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir+"/"+f.Name(), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Render(dir); err != nil {
		t.Fatalf("a copy of the shipped folder: %v", err)
	}
	if err := os.WriteFile(dir+"/extra.yaml", []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(dir); err == nil || !strings.Contains(err.Error(), "extra.yaml is not among the kustomization's resources") {
		t.Errorf("an unlisted file: got %v", err)
	}
}
