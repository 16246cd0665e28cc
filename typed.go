package rbatch

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"
)

// TypedBucket is a Bucket whose value is a T, read back through the batch's
// codec: strings, []byte, integers, floats and bool need none; other types
// (structs, maps, slices) need WithCodec, such as JSONCodec.
//
//	u := rbatch.BucketOf[User](b, "user:1").GetAsync() // *Future[User]
type TypedBucket[T any] struct{ o *Bucket }

// BucketOf returns the bucket at key with values of type T.
func BucketOf[T any](b *Batch, key string) *TypedBucket[T] { return &TypedBucket[T]{b.Bucket(key)} }

// GetAsync reads the value (GET) and decodes it; ErrNil when missing.
func (t *TypedBucket[T]) GetAsync() *Future[T] {
	codec := t.o.b.opts.Codec
	dec := func(reply any) (T, error) {
		var v T
		raw, ok := reply.([]byte)
		if !ok {
			if reply == nil {
				return v, ErrNil
			}
			return v, unexpected("a string", reply)
		}
		err := decodeValue(codec, raw, &v)
		return v, err
	}
	return keyed(t.o.b, dec, "GET", t.o.key, nil)
}

// SetAsync sets the value (SET), encoded as the batch encodes any value.
func (t *TypedBucket[T]) SetAsync(v T) *Future[struct{}] { return t.o.SetAsync(v) }

// SetWithTTLAsync sets the value with a time to live (SET … PX).
func (t *TypedBucket[T]) SetWithTTLAsync(v T, ttl time.Duration) *Future[struct{}] {
	return t.o.SetWithTTLAsync(v, ttl)
}

// SetIfAbsentAsync sets the value only if the key does not exist (SET … NX).
func (t *TypedBucket[T]) SetIfAbsentAsync(v T, ttl time.Duration) *Future[bool] {
	return t.o.SetIfAbsentAsync(v, ttl)
}

// decodeValue decodes raw into *dst: the basic types directly, the others
// through codec (ErrNoCodec without one).
func decodeValue(codec Codec, raw []byte, dst any) error {
	switch d := dst.(type) {
	case *string:
		*d = string(raw)
		return nil
	case *[]byte:
		*d = append([]byte{}, raw...) // an empty value is empty, not nil
		return nil
	}
	rv := reflect.ValueOf(dst).Elem()
	switch rv.Kind() {
	case reflect.String: // a named string type, stored as its text
		rv.SetString(string(raw))
		return nil
	case reflect.Slice:
		if rv.Type().Elem().Kind() == reflect.Uint8 { // a named []byte
			rv.SetBytes(append([]byte{}, raw...))
			return nil
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(string(raw), 10, rv.Type().Bits())
		if err != nil {
			return fmt.Errorf("rbatch: %q is not a %s: %w", raw, rv.Type(), err)
		}
		rv.SetInt(n)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(string(raw), 10, rv.Type().Bits())
		if err != nil {
			return fmt.Errorf("rbatch: %q is not a %s: %w", raw, rv.Type(), err)
		}
		rv.SetUint(n)
		return nil
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(string(raw), rv.Type().Bits())
		if err != nil {
			return fmt.Errorf("rbatch: %q is not a %s: %w", raw, rv.Type(), err)
		}
		rv.SetFloat(f)
		return nil
	case reflect.Bool:
		b, err := strconv.ParseBool(string(raw))
		if err != nil {
			return fmt.Errorf("rbatch: %q is not a bool: %w", raw, err)
		}
		rv.SetBool(b)
		return nil
	}
	if codec == nil {
		return fmt.Errorf("rbatch: decoding a %s: %w", rv.Type(), ErrNoCodec)
	}
	if err := codec.Decode(raw, dst); err != nil {
		return fmt.Errorf("rbatch: decoding a %s: %w", rv.Type(), err)
	}
	return nil
}

// TypedHash is a hash read into and written from a struct T, field by
// field: a field named by its `redis:"name"` tag (or its Go name; `redis:"-"`
// skips it) holds one hash field, decoded like a TypedBucket's value.
//
//	type User struct {
//		Name  string `redis:"name"`
//		Age   int    `redis:"age"`
//	}
//	u := rbatch.HashOf[User](b, "user:1").GetAsync() // HGETALL into a User
type TypedHash[T any] struct{ o *Map }

// HashOf returns the hash at key, mapped onto the struct T.
func HashOf[T any](b *Batch, key string) *TypedHash[T] { return &TypedHash[T]{b.Map(key)} }

// GetAsync reads the whole hash (HGETALL) into a T; ErrNil when the key
// does not exist. Hash fields without a struct field are ignored.
func (t *TypedHash[T]) GetAsync() *Future[T] {
	codec := t.o.b.opts.Codec
	fields, ferr := structFields(reflect.TypeFor[T]())
	dec := func(reply any) (T, error) {
		var v T
		m, err := decodeStringMap(reply)
		if err != nil {
			return v, err
		}
		if len(m) == 0 {
			return v, ErrNil
		}
		rv := reflect.ValueOf(&v).Elem()
		for _, f := range fields {
			s, ok := m[f.name]
			if !ok {
				continue
			}
			if err := decodeValue(codec, []byte(s), rv.FieldByIndex(f.index).Addr().Interface()); err != nil {
				return v, fmt.Errorf("field %q: %w", f.name, err)
			}
		}
		return v, nil
	}
	return keyed(t.o.b, dec, "HGETALL", t.o.key, ferr)
}

// PutAsync sets the hash fields of v's struct fields (HSET of them all).
func (t *TypedHash[T]) PutAsync(v T) *Future[struct{}] {
	fields, err := structFields(reflect.TypeFor[T]())
	rv := reflect.ValueOf(v)
	var args []any
	if err == nil {
		for _, f := range fields {
			args = append(args, f.name, rv.FieldByIndex(f.index).Interface())
		}
		if len(args) == 0 {
			err = fmt.Errorf("%s has no field to store", reflect.TypeFor[T]())
		}
	}
	return keyed(t.o.b, decodeAdded, "HSET", t.o.key, err, args...)
}

// structField is a struct field mapped to a hash field.
type structField struct {
	name  string
	index []int
}

// structFields lists the exported fields of struct type typ by hash field.
func structFields(typ reflect.Type) ([]structField, error) {
	if typ.Kind() != reflect.Struct {
		return nil, errors.New("HashOf needs a struct type, not " + typ.String())
	}
	var out []structField
	for _, f := range reflect.VisibleFields(typ) {
		if !f.IsExported() || f.Anonymous {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("redis"); ok {
			if tag == "-" {
				continue
			}
			if tag != "" {
				name = tag
			}
		}
		out = append(out, structField{name: name, index: f.Index})
	}
	return out, nil
}
