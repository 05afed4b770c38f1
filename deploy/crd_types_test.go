package deploy

import (
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The custom resources of KEDA, the Gateway API Inference Extension and
// KServe, declared here for strict decoding: their Go types live in
// modules that bring their projects' whole dependency trees (KEDA's
// scalers' cloud SDKs, controller-runtime, Envoy's protos), which this
// test module does without. Each type below copies the JSON names of
// the published type for the fields the chart renders or may render;
// a field the chart renders that is missing here fails the decoding,
// so a template typo fails too. Sources:
//   - ScaledObject: github.com/kedacore/keda/v2 apis/keda/v1alpha1/scaledobject_types.go
//     (keda.sh/v1alpha1)
//   - InferencePool: sigs.k8s.io/gateway-api-inference-extension api/v1/inferencepool_types.go
//     (inference.networking.k8s.io/v1, the release with endpointPickerRef.port)
//   - ServingRuntime: github.com/kserve/kserve pkg/apis/serving/v1alpha1/servingruntime_types.go
//     (serving.kserve.io/v1alpha1)

// ScaledObject is keda.sh/v1alpha1's.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ScaledObjectSpec `json:"spec"`
}

type ScaledObjectSpec struct {
	ScaleTargetRef        *ScaleTarget    `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32          `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *AdvancedConfig `json:"advanced,omitempty"`
	Triggers              []ScaleTriggers `json:"triggers"`
	Fallback              *struct {
		FailureThreshold int32  `json:"failureThreshold"`
		Replicas         int32  `json:"replicas"`
		Behavior         string `json:"behavior,omitempty"`
	} `json:"fallback,omitempty"`
}

type ScaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type AdvancedConfig struct {
	HorizontalPodAutoscalerConfig *struct {
		Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
		Name     string                                         `json:"name,omitempty"`
	} `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
}

type ScaleTriggers struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
	MetricType autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

// InferencePool is inference.networking.k8s.io/v1's.
type InferencePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              InferencePoolSpec `json:"spec"`
}

type InferencePoolSpec struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	TargetPorts       []PoolPort         `json:"targetPorts"`
	AppProtocol       string             `json:"appProtocol,omitempty"`
	EndpointPickerRef *EndpointPickerRef `json:"endpointPickerRef,omitempty"`
}

type PoolPort struct {
	Number int32 `json:"number"`
}

type EndpointPickerRef struct {
	Group       *string   `json:"group,omitempty"`
	Kind        string    `json:"kind,omitempty"`
	Name        string    `json:"name"`
	Port        *PoolPort `json:"port,omitempty"`
	FailureMode string    `json:"failureMode,omitempty"`
}

// ServingRuntime is serving.kserve.io/v1alpha1's.
type ServingRuntime struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ServingRuntimeSpec `json:"spec"`
}

type ServingRuntimeSpec struct {
	SupportedModelFormats []struct {
		Name       string  `json:"name"`
		Version    *string `json:"version,omitempty"`
		AutoSelect *bool   `json:"autoSelect,omitempty"`
		Priority   *int32  `json:"priority,omitempty"`
	} `json:"supportedModelFormats,omitempty"`
	MultiModel       *bool    `json:"multiModel,omitempty"`
	Disabled         *bool    `json:"disabled,omitempty"`
	ProtocolVersions []string `json:"protocolVersions,omitempty"`

	// ServingRuntimePodSpec, inline.
	Containers       []corev1.Container            `json:"containers"`
	Volumes          []corev1.Volume               `json:"volumes,omitempty"`
	NodeSelector     map[string]string             `json:"nodeSelector,omitempty"`
	Affinity         *corev1.Affinity              `json:"affinity,omitempty"`
	Tolerations      []corev1.Toleration           `json:"tolerations,omitempty"`
	Labels           map[string]string             `json:"labels,omitempty"`
	Annotations      map[string]string             `json:"annotations,omitempty"`
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`
}
