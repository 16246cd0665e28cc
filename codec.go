package rbatch

import "encoding/json"

// Codec turns values that are not string, []byte, integers, floats or bool
// into bytes (every command's arguments) and back (the values BucketOf and
// HashOf read). Set one per batch with WithCodec; without one, such a value
// fails Execute (naming the command) and nothing of the batch is sent, and
// reading one fails its future with ErrNoCodec.
type Codec interface {
	Encode(v any) ([]byte, error)
	Decode(data []byte, v any) error
}

// JSONCodec encodes values with encoding/json. It is the codec to pass to
// WithCodec for structs, maps and slices; rbatch uses no codec unless told.
var JSONCodec Codec = jsonCodec{}

type jsonCodec struct{}

func (jsonCodec) Encode(v any) ([]byte, error)    { return json.Marshal(v) }
func (jsonCodec) Decode(data []byte, v any) error { return json.Unmarshal(data, v) }
