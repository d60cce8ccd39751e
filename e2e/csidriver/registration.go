package main

import (
	"context"
	"log/slog"

	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// registrationServer answers the kubelet's plugin watcher, which finds the
// socket in its plugins_registry directory. Serving it in the driver itself
// replaces the node-driver-registrar sidecar.
type registrationServer struct {
	registerapi.UnimplementedRegistrationServer
	name     string
	endpoint string // path of the CSI socket the kubelet is to call
	log      *slog.Logger
}

func (r *registrationServer) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.name,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registrationServer) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.GetPluginRegistered() {
		r.log.Info("registered with the kubelet")
	} else {
		r.log.Error("kubelet refused registration", "error", s.GetError())
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}
