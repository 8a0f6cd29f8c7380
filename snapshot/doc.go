// Package snapshot keeps filesystem snapshots for overlayfs and moves layers
// in and out of them.
//
// A snapshot is one directory holding one layer in overlayfs format: files
// added or changed by the layer, deleted paths as 0/0 character devices, and
// opaque directories marked with the trusted.overlay.opaque=y xattr. A root
// filesystem is the overlay of a stack of snapshots (top first). A snapshot
// is made in two ways:
//
//   - Unpack: a layer tar from an image is applied into a new snapshot, with
//     OCI whiteouts (.wh.NAME, .wh..wh..opq) converted to the overlay form.
//   - Prepare/Commit: an Active snapshot is an empty upper dir (plus overlay
//     work dir) that a RUN or COPY step writes into through an overlay mount
//     made by package exec; Commit renames it into place under its key.
//
// Snapshots are built in a temporary directory and renamed into place, so a
// killed process never leaves a half-made snapshot under a real key. A
// committed snapshot is immutable and shared by every image and step that
// uses it.
//
// This package describes mounts (Mount) but never performs them: package
// exec does. Diff walks an upper dir into an OCI layer tar.
package snapshot
