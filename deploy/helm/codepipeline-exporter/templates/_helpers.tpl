{{/* The name of every object: the release's name, with the chart's unless it already holds it. */}}
{{- define "codepipeline-exporter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The labels that select the pods; they never change over a release's life. */}}
{{- define "codepipeline-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "codepipeline-exporter.labels" -}}
{{ include "codepipeline-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "codepipeline-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "codepipeline-exporter.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image, which must be set: no image is published, so a release of the placeholder would
only end in ImagePullBackOff. */}}
{{- define "codepipeline-exporter.image" -}}
{{- $repository := .Values.image.repository | default "" -}}
{{- if or (eq $repository "") (contains "your-org" $repository) -}}
{{- fail "image.repository is not set: no image of codepipeline-exporter is published. Build deploy/Dockerfile, push it to your registry, and set image.repository (and image.tag); see \"Build and push the image\" in docs/deployment.md" -}}
{{- end -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The pod template of the Deployment and of the StatefulSet alike. */}}
{{- define "codepipeline-exporter.pod" -}}
metadata:
  labels:
    {{- include "codepipeline-exporter.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: exporter
    # A changed configuration rolls the pods.
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if .Values.webConfig.enabled }}
    checksum/web-config: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "codepipeline-exporter.serviceAccountName" . }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: exporter
      image: {{ include "codepipeline-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - --config.file=/etc/codepipeline-exporter/config.yaml
        - --web.listen-address=:{{ .Values.service.port }}
        - --log.format={{ .Values.logFormat }}
        {{- if .Values.webConfig.enabled }}
        - --web.config.file=/etc/codepipeline-exporter/web/web-config.yaml
        {{- end }}
        {{- if gt (int .Values.shards) 1 }}
        - --shard=$(POD_NAME)
        - --total-shards={{ .Values.shards }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or (gt (int .Values.shards) 1) .Values.otlp.endpoint }}
      env:
        {{- if gt (int .Values.shards) 1 }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with .Values.otlp.endpoint }}
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.otlp.serviceName }}
        - name: OTEL_SERVICE_NAME
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.otlp.metricExportInterval }}
        - name: OTEL_METRIC_EXPORT_INTERVAL
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.otlp.metricsTemporality }}
        - name: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE
          value: {{ . | quote }}
        {{- end }}
      {{- end }}
      ports:
        - name: http-metrics
          containerPort: {{ .Values.service.port }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      {{- $scheme := ternary "HTTPS" "HTTP" (and .Values.webConfig.enabled (hasKey .Values.webConfig.config "tls_server_config")) }}
      {{- if not (and .Values.webConfig.enabled (hasKey .Values.webConfig.config "basic_auth_users")) }}
      livenessProbe:
        httpGet:
          path: /-/healthy
          port: http-metrics
          scheme: {{ $scheme }}
        periodSeconds: 10
      readinessProbe:
        httpGet:
          path: /-/ready
          port: http-metrics
          scheme: {{ $scheme }}
        periodSeconds: 5
      {{- else }}
      # Basic authentication covers the probe paths too: probe that the port is open.
      livenessProbe:
        tcpSocket:
          port: http-metrics
        periodSeconds: 10
      {{- end }}
      volumeMounts:
        - name: config
          mountPath: /etc/codepipeline-exporter
          readOnly: true
        {{- if .Values.webConfig.enabled }}
        - name: web-config
          mountPath: /etc/codepipeline-exporter/web
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "codepipeline-exporter.fullname" . }}
    {{- if .Values.webConfig.enabled }}
    - name: web-config
      secret:
        secretName: {{ include "codepipeline-exporter.fullname" . }}-web-config
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
