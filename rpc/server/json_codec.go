package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// strictJSON is the JSON codec of the public services: like connect's own,
// except that a field the message does not have is an error. JSON comes
// from people (curl, scripts), and a misspelt field ("worksapce") silently
// dropped runs the job with the default instead. The binary protobuf
// codec keeps accepting unknown fields: that is how runners, CLIs and
// servers of neighbouring versions talk to each other.
type strictJSON struct{ name string }

// strictJSONCodecs covers both names a client may use for JSON.
func strictJSONCodecs() []connect.HandlerOption {
	return []connect.HandlerOption{
		connect.WithCodec(strictJSON{"json"}),
		connect.WithCodec(strictJSON{"json; charset=utf-8"}),
	}
}

func (c strictJSON) Name() string { return c.name }

func (c strictJSON) Marshal(m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return protojson.MarshalOptions{}.Marshal(pm)
}

func (c strictJSON) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", m)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (c strictJSON) Unmarshal(data []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", m)
	}
	if len(data) == 0 {
		return errors.New("an empty body is not a JSON object; send {} for a request with no fields")
	}
	err := protojson.UnmarshalOptions{}.Unmarshal(data, pm)
	if err != nil {
		if path, desc := unknownField(data, pm.ProtoReflect().Descriptor()); path != "" {
			return fmt.Errorf("unknown field %q in %s; %s has the fields %s (see website/api.md)",
				path, pm.ProtoReflect().Descriptor().Name(), desc.Name(), fieldList(desc))
		}
		return err
	}
	return nil
}

func (c strictJSON) MarshalStable(m any) ([]byte, error) {
	b, err := c.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func (c strictJSON) IsBinary() bool { return false }

// unknownField finds the first field of data (keys in sorted order) that the message, or the nested message it is in, does not
// have, and returns its dotted path and that message's descriptor. It
// runs only after protojson has refused data, to say more than protojson
// does (which names the field but not where it is, nor what is there).
func unknownField(data []byte, md protoreflect.MessageDescriptor) (string, protoreflect.MessageDescriptor) {
	var v any
	if json.Unmarshal(data, &v) != nil {
		return "", nil
	}
	return walkUnknown(v, md, "")
}

func walkUnknown(v any, md protoreflect.MessageDescriptor, prefix string) (string, protoreflect.MessageDescriptor) {
	obj, ok := v.(map[string]any)
	if !ok || md == nil || wellKnown(md) {
		return "", nil
	}
	fields := md.Fields()
	for _, key := range sortedKeys(obj) {
		fd := fields.ByJSONName(key)
		if fd == nil {
			fd = fields.ByTextName(key)
		}
		if fd == nil {
			return prefix + key, md
		}
		if fd.Message() == nil {
			continue
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				continue
			}
			if m, ok := obj[key].(map[string]any); ok {
				for _, k := range sortedKeys(m) {
					if p, d := walkUnknown(m[k], fd.MapValue().Message(), prefix+key+"."+k+"."); p != "" {
						return p, d
					}
				}
			}
		case fd.IsList():
			if list, ok := obj[key].([]any); ok {
				for i, e := range list {
					if p, d := walkUnknown(e, fd.Message(), fmt.Sprintf("%s%s[%d].", prefix, key, i)); p != "" {
						return p, d
					}
				}
			}
		default:
			if p, d := walkUnknown(obj[key], fd.Message(), prefix+key+"."); p != "" {
				return p, d
			}
		}
	}
	return "", nil
}

// wellKnown reports the google.protobuf types whose JSON form is not an
// object of their fields (Duration is "60s", Timestamp a string, ...).
func wellKnown(md protoreflect.MessageDescriptor) bool {
	return md.ParentFile() != nil && strings.HasPrefix(string(md.ParentFile().Package()), "google.protobuf")
}

func fieldList(md protoreflect.MessageDescriptor) string {
	fields := md.Fields()
	names := make([]string, fields.Len())
	for i := range names {
		names[i] = fields.Get(i).JSONName()
	}
	return strings.Join(names, ", ")
}

// sortedKeys gives a stable answer: Go keeps no order of a JSON object.
func sortedKeys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }
