// Package deploy holds no code: its tests check the deployment artefacts
// (the Dockerfile at the module root, deploy/birdhouse and deploy/systemd)
// against the binary they ship, built with CGO_ENABLED=0 as the image does.
package deploy
