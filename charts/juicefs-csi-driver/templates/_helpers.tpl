{{/*
Names that other programs rely on are fixed, not derived from the release name:
- Service juicefs-admission-webhook, Secret juicefs-webhook-certs and
  MutatingWebhookConfiguration juicefs-admission-webhook are what juicefs-certs is told
  (--service, --secret, --webhook-config) and what the certificate's DNS names carry;
- ConfigMap juicefs-csi-driver-config is the name mountspec and the Go driver's tools use;
- pod labels app=juicefs-csi-controller / app=juicefs-csi-node are how the Go driver's tools
  find the CSI pods.
One release per cluster: the cluster-scoped objects have fixed names too.
*/}}

{{- define "juicefs.webhookService" -}}juicefs-admission-webhook{{- end -}}
{{- define "juicefs.webhookConfig" -}}juicefs-admission-webhook{{- end -}}
{{- define "juicefs.webhookSecret" -}}juicefs-webhook-certs{{- end -}}
{{- define "juicefs.configMap" -}}juicefs-csi-driver-config{{- end -}}

{{/* The webhook paths served by juicefs-webhook. */}}
{{- define "juicefs.injectPath" -}}/juicefs/inject-v1-pod{{- end -}}
{{- define "juicefs.serverlessPath" -}}/juicefs/serverless/inject-v1-pod{{- end -}}

{{/* Where the containers find things. */}}
{{- define "juicefs.certDir" -}}/etc/webhook/certs{{- end -}}
{{- define "juicefs.configDir" -}}/etc/juicefs{{- end -}}
{{- define "juicefs.controllerSocketDir" -}}/var/lib/csi/sockets/pluginproxy{{- end -}}
{{- define "juicefs.nodeSocketDir" -}}/csi{{- end -}}

{{/*
mountMode, validated: a "|"-separated list of sidecar, serverless, mountpod.
*/}}
{{- define "juicefs.modes" -}}
{{- $modes := list -}}
{{- range $m := splitList "|" (toString .Values.mountMode) -}}
{{- $m = trim $m -}}
{{- if not (has $m (list "sidecar" "serverless" "mountpod")) -}}
{{- fail (printf "mountMode %q: %q is not one of sidecar, serverless, mountpod (combine them with |, e.g. sidecar|mountpod)" (toString $.Values.mountMode) $m) -}}
{{- end -}}
{{- $modes = append $modes $m -}}
{{- end -}}
{{- $modes | uniq | join "|" -}}
{{- end -}}

{{/* "true" when the sidecar (non-serverless) webhook is wanted. */}}
{{- define "juicefs.sidecar" -}}
{{- if has "sidecar" (splitList "|" (include "juicefs.modes" .)) -}}true{{- end -}}
{{- end -}}

{{- define "juicefs.serverless" -}}
{{- if has "serverless" (splitList "|" (include "juicefs.modes" .)) -}}true{{- end -}}
{{- end -}}

{{/* "true" when the webhook runs at all. */}}
{{- define "juicefs.webhook" -}}
{{- if or (include "juicefs.sidecar" .) (include "juicefs.serverless" .) -}}true{{- end -}}
{{- end -}}

{{/* "true" when the CSI node DaemonSet runs. */}}
{{- define "juicefs.node" -}}
{{- if and .Values.node.enabled (has "mountpod" (splitList "|" (include "juicefs.modes" .))) -}}true{{- end -}}
{{- end -}}

{{- define "juicefs.controller" -}}
{{- if .Values.controller.enabled -}}true{{- end -}}
{{- end -}}

{{/*
mountspec (shared by the webhook and the CSI node) recognises JuiceFS PVs by the driver name
csi.juicefs.com; it is not configurable yet, so another name would render a driver whose
volumes no component mounts.
*/}}
{{- define "juicefs.driverName" -}}
{{- if ne .Values.driverName "csi.juicefs.com" -}}
{{- fail (printf "driverName %q: only csi.juicefs.com is supported (the webhook and the node plugin recognise JuiceFS PVs by that name)" .Values.driverName) -}}
{{- end -}}
{{- .Values.driverName -}}
{{- end -}}

{{- define "juicefs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "juicefs.mountImage" -}}
{{- printf "%s:%s" .Values.mountImage.repository (default .Chart.AppVersion .Values.mountImage.tag) -}}
{{- end -}}

{{- define "juicefs.labels" -}}
app.kubernetes.io/name: juicefs-csi-driver
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "juicefs.versionLabels" . }}
{{- end -}}

{{- define "juicefs.versionLabels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Pod template labels: the selector plus the common labels and the component. */}}
{{- define "juicefs.podLabels" -}}
{{ include "juicefs.selector" . }}
app.kubernetes.io/name: juicefs-csi-driver
app.kubernetes.io/component: {{ .component }}
{{ include "juicefs.versionLabels" .ctx }}
{{- end -}}

{{/* Pod selector labels per component: (dict "ctx" $ "app" "juicefs-csi-node"). */}}
{{- define "juicefs.selector" -}}
app: {{ .app }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end -}}

{{/*
Security context of the unprivileged control-plane containers: the image's non-root user,
nothing writable but mounted volumes, no capabilities.
*/}}
{{- define "juicefs.restrictedContainer" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
CSI sidecars on the node must run as root (they write into the kubelet's root-owned plugin
directories and connect to the root-owned plugin socket) but need no capability for that:
the files are theirs by uid.
*/}}
{{- define "juicefs.rootNoCaps" -}}
runAsUser: 0
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "juicefs.podNamespaceEnv" -}}
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end -}}
