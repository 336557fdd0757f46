// k8s_check validates Fulcrum's Kubernetes manifests (deploy/k8s) offline,
// with Kubernetes' own code, as far as a machine with no cluster can:
//
//  1. kustomize renders the kustomization, as `kubectl apply -k` would;
//  2. each object is decoded strictly into its k8s.io/api type: an unknown
//     or duplicated field, or a value of the wrong type, is an error;
//  3. the API server's create path runs on it (defaulting, conversion to the
//     internal type, rest.BeforeCreate with the kind's registry strategy):
//     the same required-field and value checks a real API server makes;
//  4. what an API server accepts but a pod would fail on: references to
//     ConfigMaps, Secrets, claims, Services and ports that the bundle does
//     not hold, $(VAR) references to variables a container does not define,
//     selectors that select nothing;
//  5. Fulcrum's own rules: every container non-root on a read-only root file
//     system with CPU and memory requests and limits, the shards probed on
//     the gRPC health service;
//  6. with the binaries at hand, every --flag a Fulcrum container is given
//     is one that binary knows (its --helpfull), and the coordinator's
//     StatefulSet's pod 0 (the one given the job) starts: its ps_server
//     runs with the manifest's arguments and the ConfigMap's and Secret's
//     files where they would be mounted, and serves.
//
// Usage: go run . [-bin_dir=DIR] [DIR]   (DIR defaults to ../../deploy/k8s;
// -bin_dir holds server/ps_server and worker/worker, e.g. bazel-bin).
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	_ "k8s.io/kubernetes/pkg/apis/apps/install"
	_ "k8s.io/kubernetes/pkg/apis/batch/install"
	api "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	_ "k8s.io/kubernetes/pkg/apis/policy/install"
	"k8s.io/kubernetes/pkg/registry/apps/statefulset"
	"k8s.io/kubernetes/pkg/registry/batch/job"
	"k8s.io/kubernetes/pkg/registry/core/configmap"
	"k8s.io/kubernetes/pkg/registry/core/persistentvolumeclaim"
	"k8s.io/kubernetes/pkg/registry/core/secret"
	"k8s.io/kubernetes/pkg/registry/core/service"
	"k8s.io/kubernetes/pkg/registry/policy/poddisruptionbudget"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Object is one rendered manifest, decoded into its k8s.io/api type.
type Object struct {
	Kind string
	Name string
	Obj  runtime.Object // *corev1.Service, *appsv1.StatefulSet, ...
	YAML []byte
}

func (o Object) String() string { return o.Kind + "/" + o.Name }

// The kinds the manifests may hold, with the API server's create strategy
// for each.
var strategies = map[schema.GroupVersionKind]rest.RESTCreateStrategy{
	corev1.SchemeGroupVersion.WithKind("Service"):               service.Strategy,
	corev1.SchemeGroupVersion.WithKind("ConfigMap"):             configmap.Strategy,
	corev1.SchemeGroupVersion.WithKind("Secret"):                secret.Strategy,
	corev1.SchemeGroupVersion.WithKind("PersistentVolumeClaim"): persistentvolumeclaim.Strategy,
	appsv1.SchemeGroupVersion.WithKind("StatefulSet"):           statefulset.Strategy,
	batchv1.SchemeGroupVersion.WithKind("Job"):                  job.Strategy,
	policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"): poddisruptionbudget.Strategy,
}

// Render builds the kustomization in dir as `kubectl kustomize` does and
// returns each resource as YAML. Every *.yaml file in dir must be reached
// from the kustomization, so no manifest escapes the checks.
func Render(dir string) ([][]byte, error) {
	kustomizer := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resources, err := kustomizer.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize %s: %w", dir, err)
	}
	var docs [][]byte
	for _, r := range resources.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize %s: %s: %w", dir, r.CurId(), err)
		}
		docs = append(docs, y)
	}
	var listed struct {
		Resources []string `json:"resources"`
	}
	k, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(k, &listed); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	for _, f := range files {
		base := filepath.Base(f)
		found := base == "kustomization.yaml"
		for _, r := range listed.Resources {
			found = found || r == base
		}
		if !found {
			return nil, fmt.Errorf("%s is not among the kustomization's resources", f)
		}
	}
	return docs, nil
}

// Decode decodes one manifest strictly into its k8s.io/api type: unknown or
// duplicated fields and values of the wrong type are errors.
func Decode(doc []byte) (Object, error) {
	var meta struct {
		metav1.TypeMeta `json:",inline"`
		Metadata        struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return Object{}, err
	}
	gvk := meta.GroupVersionKind()
	id := gvk.Kind + "/" + meta.Metadata.Name
	if _, ok := strategies[gvk]; !ok {
		return Object{}, fmt.Errorf("%s: apiVersion %q kind %q is not a kind these manifests may use",
			id, meta.APIVersion, meta.Kind)
	}
	obj, err := legacyscheme.Scheme.New(gvk)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", id, err)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return Object{}, fmt.Errorf("%s: %w", id, err)
	}
	return Object{Kind: gvk.Kind, Name: meta.Metadata.Name, Obj: obj, YAML: doc}, nil
}

// ValidateCreate runs what the API server runs when the object is created
// in namespace "default": defaulting, conversion to the internal type and
// rest.BeforeCreate with the kind's strategy (required fields, formats,
// ranges, cross-field rules).
func ValidateCreate(o Object) error {
	gvk := o.Obj.GetObjectKind().GroupVersionKind()
	strategy := strategies[gvk]
	external := o.Obj.DeepCopyObject()
	legacyscheme.Scheme.Default(external)
	internal, err := legacyscheme.Scheme.ConvertToVersion(external, gvk.GroupKind().WithVersion(runtime.APIVersionInternal).GroupVersion())
	if err != nil {
		return fmt.Errorf("%s: converting to the internal type: %w", o, err)
	}
	accessor, err := metaAccessor(internal)
	if err != nil {
		return fmt.Errorf("%s: %w", o, err)
	}
	if accessor.GetNamespace() == "" && strategy.NamespaceScoped() {
		accessor.SetNamespace(metav1.NamespaceDefault)
	}
	rest.FillObjectMetaSystemFields(accessor)
	if svc, ok := internal.(*api.Service); ok {
		allocateServiceIPs(svc)
	}
	ctx := genericapirequest.WithNamespace(context.Background(), metav1.NamespaceDefault)
	ctx = genericapirequest.WithRequestInfo(ctx, &genericapirequest.RequestInfo{
		IsResourceRequest: true, Verb: "create", APIGroup: gvk.Group, APIVersion: gvk.Version,
		Namespace: metav1.NamespaceDefault, Name: o.Name,
	})
	if err := rest.BeforeCreate(strategy, ctx, internal); err != nil {
		return fmt.Errorf("%s: the API server would refuse it: %w", o, err)
	}
	return nil
}

// allocateServiceIPs does what the API server's Service storage does to a
// new Service before validating it (pkg/registry/core/service/storage:
// normalizeClusterIPs, then the allocators' initIPFamilyFields and
// txnAllocClusterIPs), as on a single-stack IPv4 cluster whose service range
// has 10.96.0.10 free.
func allocateServiceIPs(svc *api.Service) {
	if svc.Spec.Type == api.ServiceTypeExternalName {
		return
	}
	if svc.Spec.ClusterIP != "" && len(svc.Spec.ClusterIPs) == 0 {
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	}
	if svc.Spec.IPFamilyPolicy == nil {
		policy := api.IPFamilyPolicySingleStack
		if svc.Spec.ClusterIP == api.ClusterIPNone && len(svc.Spec.Selector) == 0 {
			policy = api.IPFamilyPolicyRequireDualStack
		}
		svc.Spec.IPFamilyPolicy = &policy
	}
	if len(svc.Spec.IPFamilies) == 0 {
		svc.Spec.IPFamilies = []api.IPFamily{api.IPv4Protocol}
		if *svc.Spec.IPFamilyPolicy == api.IPFamilyPolicyRequireDualStack {
			svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, api.IPv6Protocol)
		}
	}
	if svc.Spec.ClusterIP == "" {
		svc.Spec.ClusterIP = "10.96.0.10"
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	}
}

func metaAccessor(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.ObjectMetaAccessor)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m.GetObjectMeta(), nil
}

// Check decodes and validates every rendered manifest and checks the bundle
// as a whole; binDir, when not empty, holds the Fulcrum binaries whose flags
// the containers' arguments are checked against. It returns every problem
// found.
func Check(docs [][]byte, binDir string) []error {
	var errs []error
	var objects []Object
	for _, doc := range docs {
		o, err := Decode(doc)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := ValidateCreate(o); err != nil {
			errs = append(errs, err)
		}
		objects = append(objects, o)
	}
	errs = append(errs, checkBundle(objects)...)
	if binDir != "" {
		errs = append(errs, checkFlags(objects, binDir)...)
		if len(errs) == 0 {
			if err := checkCoordinatorStarts(objects, binDir); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

// A workload's pod template, with where it came from.
type podTemplate struct {
	owner  Object
	spec   *corev1.PodTemplateSpec
	claims []corev1.PersistentVolumeClaim // a StatefulSet's volumeClaimTemplates
}

func podTemplates(objects []Object) []podTemplate {
	var out []podTemplate
	for _, o := range objects {
		switch w := o.Obj.(type) {
		case *appsv1.StatefulSet:
			out = append(out, podTemplate{o, &w.Spec.Template, w.Spec.VolumeClaimTemplates})
		case *batchv1.Job:
			out = append(out, podTemplate{o, &w.Spec.Template, nil})
		}
	}
	return out
}

func find[T runtime.Object](objects []Object, name string) (T, bool) {
	var zero T
	for _, o := range objects {
		if t, ok := o.Obj.(T); ok && o.Name == name {
			return t, true
		}
	}
	return zero, false
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkBundle: what the API server accepts one object at a time but the
// pods would fail on, and Fulcrum's own rules.
func checkBundle(objects []Object) []error {
	var errs []error
	bad := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	templates := podTemplates(objects)
	for _, t := range templates {
		o, pod := t.owner, &t.spec.Spec
		volumes := map[string]bool{}
		for _, c := range t.claims {
			volumes[c.Name] = true
		}
		for _, v := range pod.Volumes {
			volumes[v.Name] = true
			switch {
			case v.ConfigMap != nil:
				cm, ok := find[*corev1.ConfigMap](objects, v.ConfigMap.Name)
				if !ok {
					bad(o, "volume %q: no ConfigMap %q in the manifests", v.Name, v.ConfigMap.Name)
					break
				}
				for _, item := range v.ConfigMap.Items {
					if _, has := cm.Data[item.Key]; !has {
						bad(o, "volume %q: ConfigMap %q has no key %q", v.Name, v.ConfigMap.Name, item.Key)
					}
				}
			case v.Secret != nil:
				s, ok := find[*corev1.Secret](objects, v.Secret.SecretName)
				if !ok {
					bad(o, "volume %q: no Secret %q in the manifests", v.Name, v.Secret.SecretName)
					break
				}
				for _, item := range v.Secret.Items {
					_, inData := s.Data[item.Key]
					_, inString := s.StringData[item.Key]
					if !inData && !inString {
						bad(o, "volume %q: Secret %q has no key %q", v.Name, v.Secret.SecretName, item.Key)
					}
				}
			case v.PersistentVolumeClaim != nil:
				if _, ok := find[*corev1.PersistentVolumeClaim](objects, v.PersistentVolumeClaim.ClaimName); !ok {
					bad(o, "volume %q: no PersistentVolumeClaim %q in the manifests", v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			}
		}
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			bad(o, "the pod does not set securityContext.runAsNonRoot: true")
		}
		if sc := pod.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
			bad(o, "the pod runs as root (runAsUser: 0)")
		}
		for _, c := range pod.Containers {
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					bad(o, "container %q mounts %q, which is neither a volume nor a claim template", c.Name, m.Name)
				}
			}
			defined := map[string]bool{}
			for _, e := range c.Env {
				defined[e.Name] = true
			}
			for _, arg := range append(append([]string{}, c.Command...), c.Args...) {
				for _, m := range varRef.FindAllStringSubmatch(arg, -1) {
					if !defined[m[1]] {
						bad(o, "container %q: %q refers to $(%s), which its env does not define (the kubelet would pass it verbatim)", c.Name, arg, m[1])
					}
				}
			}
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				bad(o, "container %q: root file system not read-only (securityContext.readOnlyRootFilesystem)", c.Name)
			}
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				bad(o, "container %q: securityContext.allowPrivilegeEscalation is not false", c.Name)
			}
			if sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
				bad(o, "container %q runs as root (runAsUser: 0)", c.Name)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					bad(o, "container %q: no %s request", c.Name, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					bad(o, "container %q: no %s limit", c.Name, r)
				}
			}
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe, c.StartupProbe} {
				if p != nil && p.GRPC != nil && !hasPort(c, intstr.FromInt32(p.GRPC.Port)) {
					bad(o, "container %q: gRPC probe on port %d, which it does not declare", c.Name, p.GRPC.Port)
				}
			}
		}
	}
	for _, o := range objects {
		switch w := o.Obj.(type) {
		case *appsv1.StatefulSet:
			svc, ok := find[*corev1.Service](objects, w.Spec.ServiceName)
			switch {
			case !ok:
				bad(o, "serviceName %q: no such Service in the manifests", w.Spec.ServiceName)
			case svc.Spec.ClusterIP != corev1.ClusterIPNone:
				bad(o, "serviceName %q is not headless (clusterIP: None): pods get no stable names", w.Spec.ServiceName)
			case !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.Spec.Template.Labels)):
				bad(o, "Service %q does not select this StatefulSet's pods", w.Spec.ServiceName)
			}
			for _, c := range w.Spec.Template.Spec.Containers {
				if c.ReadinessProbe == nil || c.ReadinessProbe.GRPC == nil || c.LivenessProbe == nil || c.LivenessProbe.GRPC == nil {
					bad(o, "container %q: the shards need readiness and liveness probes on the gRPC health service (grpc:)", c.Name)
				}
			}
		case *corev1.Service:
			selected := selectedPods(templates, labels.SelectorFromSet(w.Spec.Selector))
			if len(selected) == 0 {
				bad(o, "its selector %v selects no pod of the manifests", w.Spec.Selector)
			}
			for _, p := range w.Spec.Ports {
				for _, t := range selected {
					if !podHasPort(t, p.TargetPort) {
						bad(o, "port %q: target port %s is not a port of %s's pods", p.Name, p.TargetPort.String(), t.owner)
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			selector, err := metav1.LabelSelectorAsSelector(w.Spec.Selector)
			if err != nil {
				bad(o, "selector: %v", err)
			} else if len(selectedPods(templates, selector)) == 0 {
				bad(o, "its selector selects no pod of the manifests")
			}
		}
	}
	return errs
}

// programArgs is what the program of a container is started with: its
// command's arguments, then args.
func programArgs(c corev1.Container) []string {
	var out []string
	if len(c.Command) > 1 {
		out = append(out, c.Command[1:]...)
	}
	return append(out, c.Args...)
}

func firstOrEmpty(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return values[0]
}

func selectedPods(templates []podTemplate, selector labels.Selector) []podTemplate {
	var out []podTemplate
	for _, t := range templates {
		if !selector.Empty() && selector.Matches(labels.Set(t.spec.Labels)) {
			out = append(out, t)
		}
	}
	return out
}

func hasPort(c corev1.Container, port intstr.IntOrString) bool {
	for _, p := range c.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) ||
			(port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

func podHasPort(t podTemplate, port intstr.IntOrString) bool {
	for _, c := range t.spec.Spec.Containers {
		if hasPort(c, port) {
			return true
		}
	}
	return false
}

// knownFlags returns the flags a binary lists in its --helpfull output
// (Abseil's format: "    --name (help); default: ...").
func knownFlags(binary string) (map[string]bool, error) {
	out, _ := exec.Command(binary, "--helpfull").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+--([A-Za-z0-9_]+) `).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		return nil, fmt.Errorf("%s --helpfull listed no flags: %.200s", binary, out)
	}
	return flags, nil
}

// The image's binaries, by their path in the image (deploy/Dockerfile), and
// where Bazel builds them.
var imageBinaries = map[string]string{
	"/fulcrum/ps_server": "server/ps_server",
	"/fulcrum/worker":    "worker/worker",
	"/fulcrum/psctl":     "tools/psctl",
}

func checkFlags(objects []Object, binDir string) []error {
	var errs []error
	cache := map[string]map[string]bool{}
	for _, t := range podTemplates(objects) {
		for _, c := range t.spec.Spec.Containers {
			if len(c.Command) == 0 {
				errs = append(errs, fmt.Errorf("%s: container %q names no command (the image's default only prints help)", t.owner, c.Name))
				continue
			}
			built, ok := imageBinaries[c.Command[0]]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: container %q runs %q, which the image does not hold", t.owner, c.Name, c.Command[0]))
				continue
			}
			flags, ok := cache[built]
			if !ok {
				var err error
				if flags, err = knownFlags(filepath.Join(binDir, built)); err != nil {
					return append(errs, err)
				}
				cache[built] = flags
			}
			for _, arg := range programArgs(c) {
				if !strings.HasPrefix(arg, "--") {
					continue
				}
				name := strings.SplitN(strings.TrimPrefix(arg, "--"), "=", 2)[0]
				if !flags[name] && !(strings.HasPrefix(name, "no") && flags[strings.TrimPrefix(name, "no")]) {
					errs = append(errs, fmt.Errorf("%s: container %q: %s does not know the flag --%s", t.owner, c.Name, c.Command[0], name))
				}
			}
		}
	}
	return errs
}

// givesTheJob tells whether a ps_server's arguments name the job it holds
// (only the coordinator's do).
func givesTheJob(args []string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, "--job=") || strings.HasPrefix(a, "--model=") {
			return true
		}
	}
	return false
}

// checkCoordinatorStarts runs the ps_server of the coordinator StatefulSet's
// pod 0 as the manifests would: their arguments with $(VARS) set as for pod
// 0, the ConfigMap and Secret files written where they would be mounted (and
// other mounts empty folders), listening on 127.0.0.1 port 0. It passes once
// the server serves (writes its --port_file) and returns what ps_server said
// if it exits first.
func checkCoordinatorStarts(objects []Object, binDir string) error {
	// The coordinator's StatefulSet is the one given the job (--job or
	// --model): its pod 0 starts alone. The others' pods (shard 0's backup,
	// other shards) wait for a coordinator before they serve.
	var set *appsv1.StatefulSet
	for _, o := range objects {
		s, ok := o.Obj.(*appsv1.StatefulSet)
		if !ok {
			continue
		}
		if set == nil {
			set = s
		}
		if len(s.Spec.Template.Spec.Containers) > 0 && givesTheJob(programArgs(s.Spec.Template.Spec.Containers[0])) {
			set = s
			break
		}
	}
	if set == nil || len(set.Spec.Template.Spec.Containers) == 0 {
		return fmt.Errorf("no StatefulSet with a container to start")
	}
	c := set.Spec.Template.Spec.Containers[0]
	id := fmt.Sprintf("StatefulSet/%s pod %s-0", set.Name, set.Name)
	built, ok := imageBinaries[firstOrEmpty(c.Command)]
	if !ok {
		return fmt.Errorf("%s: container %q runs no binary of the image (command %q)", id, c.Name, c.Command)
	}
	root, err := os.MkdirTemp("", "k8s_check")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)

	// Mounts: the longest mount path first, so /etc/a/b maps before /etc/a.
	mounts := map[string]string{}
	volumes := map[string]corev1.Volume{}
	for _, v := range set.Spec.Template.Spec.Volumes {
		volumes[v.Name] = v
	}
	for i, m := range c.VolumeMounts {
		dir := filepath.Join(root, fmt.Sprint("mount", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		mounts[m.MountPath] = dir
		files := map[string][]byte{}
		if v, ok := volumes[m.Name]; ok && v.ConfigMap != nil {
			if cm, ok := find[*corev1.ConfigMap](objects, v.ConfigMap.Name); ok {
				for k, d := range cm.Data {
					files[k] = []byte(d)
				}
			}
		} else if ok && v.Secret != nil {
			if s, ok := find[*corev1.Secret](objects, v.Secret.SecretName); ok {
				for k, d := range s.Data {
					files[k] = d
				}
				for k, d := range s.StringData {
					files[k] = []byte(d)
				}
			}
		}
		for name, data := range files {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				return err
			}
		}
	}
	paths := make([]string, 0, len(mounts))
	for p := range mounts {
		paths = append(paths, p)
	}
	sort.Slice(paths, func(i, j int) bool { return len(paths[i]) > len(paths[j]) })

	vars := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			vars[e.Name] = set.Name + "-0"
		case e.ValueFrom.FieldRef != nil && strings.Contains(e.ValueFrom.FieldRef.FieldPath, "pod-index"):
			vars[e.Name] = "0"
		}
	}
	portFile := filepath.Join(root, "port")
	var args []string
	for _, a := range programArgs(c) {
		a = varRef.ReplaceAllStringFunc(a, func(ref string) string { return vars[ref[2:len(ref)-1]] })
		for _, p := range paths {
			if i := strings.Index(a, "="+p); i >= 0 && (len(a) == i+1+len(p) || a[i+1+len(p)] == '/') {
				a = a[:i+1] + mounts[p] + a[i+1+len(p):]
				break
			}
		}
		switch {
		case strings.HasPrefix(a, "--port="):
			a = "--port=0"
		case strings.HasPrefix(a, "--metrics_port="):
			a = "--metrics_port=0"
		}
		args = append(args, a)
	}
	args = append(args, "--host=127.0.0.1", "--port_file="+portFile)
	binary := filepath.Join(binDir, built)
	cmd := exec.Command(binary, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: starting %s: %w", id, binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	for {
		if _, err := os.Stat(portFile); err == nil {
			cmd.Process.Kill()
			<-exited
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("%s: ps_server %s exited (%v) instead of serving:\n%s", id, strings.Join(args, " "), err, out.String())
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("%s: ps_server %s did not serve within 30 s:\n%s", id, strings.Join(args, " "), out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func main() {
	args := os.Args[1:]
	binDir := ""
	if len(args) > 0 && strings.HasPrefix(args[0], "-bin_dir=") {
		binDir, args = strings.TrimPrefix(args[0], "-bin_dir="), args[1:]
	}
	dir := "../../deploy/k8s"
	if len(args) > 0 {
		dir = args[0]
	}
	docs, err := Render(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8s_check:", err)
		os.Exit(1)
	}
	errs := Check(docs, binDir)
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = e.Error()
	}
	sort.Strings(msgs)
	for _, m := range msgs {
		fmt.Fprintln(os.Stderr, "k8s_check:", m)
	}
	if len(errs) > 0 {
		os.Exit(1)
	}
	fmt.Printf("k8s_check: %s: %d objects valid\n", dir, len(docs))
}
