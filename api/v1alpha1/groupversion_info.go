package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the API group and version of the Switchboard resources.
	GroupVersion = schema.GroupVersion{Group: "calls.switchboard.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the Switchboard types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the Switchboard types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &SFUPool{}, &SFUPoolList{}, &CallsApp{}, &CallsAppList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
