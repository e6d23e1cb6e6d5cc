{{/* Names, labels and derived values shared by the templates. */}}

{{- define "cxbackup.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: <release>-cxbackup, or the release name when it contains the chart name. */}}
{{- define "cxbackup.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cxbackup.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cxbackup.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cxbackup.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cxbackup.labels" -}}
helm.sh/chart: {{ include "cxbackup.chart" . }}
{{ include "cxbackup.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cxbackup
{{- end }}

{{- define "cxbackup.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cxbackup.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference, used by the operator and (CXBACKUP_WORKER_IMAGE) by its worker Jobs. */}}
{{- define "cxbackup.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repo .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/* Fails on value combinations the schema cannot express; included by the Deployment. */}}
{{- define "cxbackup.validate" -}}
{{- if and (not .Values.rbac.clusterWide) (empty .Values.watchNamespaces) }}
{{- fail "rbac.clusterWide=false needs watchNamespaces: namespaced Roles can only be created in the namespaces the operator watches (set watchNamespaces, or rbac.clusterWide=true)" }}
{{- end }}
{{- if ne (len .Values.watchNamespaces) (len (uniq .Values.watchNamespaces)) }}
{{- fail (printf "watchNamespaces has duplicates: %v" .Values.watchNamespaces) }}
{{- end }}
{{- end }}

{{/* Namespaces that get the worker ServiceAccount: the release's, the watched ones, worker.namespaces. */}}
{{- define "cxbackup.workerNamespaces" -}}
{{- $all := concat (list .Release.Namespace) .Values.watchNamespaces .Values.worker.namespaces | uniq }}
{{- toJson $all }}
{{- end }}

{{/*
The alert rules: files/alerts.yaml with every ${alerts.<group>.<key>} placeholder replaced by the
value, and alerts.extraLabels added to each rule's labels (a rule's own labels win). Returns YAML
of {groups: [...]}. Prometheus' own {{ $labels }} templates pass through untouched.
*/}}
{{- define "cxbackup.alertRules" -}}
{{- $text := .Files.Get "files/alerts.yaml" }}
{{- range $group, $settings := .Values.alerts }}
{{- if kindIs "map" $settings }}
{{- range $key, $value := $settings }}
{{- $text = replace (printf "${alerts.%s.%s}" $group $key) (toString $value) $text }}
{{- end }}
{{- end }}
{{- end }}
{{- $left := regexFind "\\$\\{alerts\\.[A-Za-z0-9_.]+\\}" $text }}
{{- if $left }}
{{- fail (printf "files/alerts.yaml uses %s, which is not in values (alerts)" $left) }}
{{- end }}
{{- $rules := fromYaml $text }}
{{- if hasKey $rules "Error" }}
{{- fail (printf "files/alerts.yaml is not valid YAML after substitution: %s" $rules.Error) }}
{{- end }}
{{- range $group := $rules.groups }}
{{- range $rule := $group.rules }}
{{- $_ := set $rule "labels" (merge (dict) ($rule.labels | default dict) $.Values.alerts.extraLabels) }}
{{- end }}
{{- end }}
{{- toYaml $rules }}
{{- end }}
