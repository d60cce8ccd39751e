package restore

import (
	"errors"
	"maps"
	"slices"
	"testing"
)

func TestParseOrdinals(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"", nil, false},
		{"0,2", []int{0, 2}, false},
		{" 1 , 3 ", []int{1, 3}, false},
		{"1,x", nil, true},
		{"-1", nil, true},
		{"1,,2", nil, true},
	}
	for _, tt := range tests {
		got, err := ParseOrdinals(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrUsage) {
				t.Errorf("ParseOrdinals(%q) err = %v, want ErrUsage", tt.in, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseOrdinals(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseStorageClassMap(t *testing.T) {
	tests := []struct {
		in      []string
		want    map[string]string
		wantErr bool
	}{
		{nil, map[string]string{}, false},
		{[]string{"gp2=gp3", "=standard"}, map[string]string{"gp2": "gp3", "": "standard"}, false},
		{[]string{"gp2=gp3", "gp2=gp3"}, map[string]string{"gp2": "gp3"}, false},
		{[]string{"gp2=gp3", "gp2=io2"}, nil, true},
		{[]string{"gp2"}, nil, true},
		{[]string{"gp2="}, nil, true},
	}
	for _, tt := range tests {
		got, err := ParseStorageClassMap(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrUsage) {
				t.Errorf("ParseStorageClassMap(%q) err = %v, want ErrUsage", tt.in, err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("ParseStorageClassMap(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
	}
}
