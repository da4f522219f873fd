package gguf

import "strconv"

// FileTypeKey is the metadata key holding a file's FileType (u32).
const FileTypeKey = "general.file_type"

// FileType is the value of general.file_type: the quantization mix a file
// was made with, as llama.cpp numbers them (llama_ftype). It describes the
// file; each tensor's own Type is what counts when reading.
type FileType uint32

// The file types llama.cpp writes. Numbers missing here were removed.
const (
	FileAllF32       FileType = 0
	FileMostlyF16    FileType = 1
	FileMostlyQ4_0   FileType = 2
	FileMostlyQ4_1   FileType = 3
	FileMostlyQ8_0   FileType = 7
	FileMostlyQ5_0   FileType = 8
	FileMostlyQ5_1   FileType = 9
	FileMostlyQ2_K   FileType = 10
	FileMostlyQ3_K_S FileType = 11
	FileMostlyQ3_K_M FileType = 12
	FileMostlyQ3_K_L FileType = 13
	FileMostlyQ4_K_S FileType = 14
	FileMostlyQ4_K_M FileType = 15
	FileMostlyQ5_K_S FileType = 16
	FileMostlyQ5_K_M FileType = 17
	FileMostlyQ6_K   FileType = 18
	FileMostlyBF16   FileType = 32
)

var fileTypeNames = map[FileType]string{
	0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
	10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M",
	16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S",
	22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M",
	28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
	37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}

// String returns the name llama-quantize uses ("Q4_K_M"), or
// "file_type(N)".
func (t FileType) String() string {
	if n, ok := fileTypeNames[t]; ok {
		return n
	}
	return "file_type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// ParseFileType returns the file type named s (case-insensitive, "q4_k_m").
func ParseFileType(s string) (FileType, bool) {
	for t, n := range fileTypeNames {
		if equalFold(n, s) {
			return t, true
		}
	}
	return 0, false
}
