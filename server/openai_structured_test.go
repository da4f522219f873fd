package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
)

// The official Go client: n choices with a json_schema response_format,
// streamed and not, json_object, logit_bias, and a schema refused with a
// 400 that names its keyword.
func TestOpenAIStructured(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 4}, Config{})
	c := e.client()
	ctx := context.Background()
	schema := map[string]any{
		"type": "object",
		"properties": map[string]any{
			"city":  map[string]any{"type": "string", "maxLength": 10},
			"temp":  map[string]any{"type": "integer", "minimum": -40, "maximum": 50},
			"sky":   map[string]any{"enum": []any{"clear", "cloudy", "rain"}},
			"hours": map[string]any{"type": "array", "items": map[string]any{"type": "number"}, "maxItems": 3},
		},
		"required":             []any{"city", "temp", "sky"},
		"additionalProperties": false,
	}
	schemaJSON, _ := json.Marshal(schema)
	ref := refValidator(t, string(schemaJSON))
	params := openai.ChatCompletionNewParams{
		Model:    demo.Name,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("the weather in Paris")},
		N:        openai.Int(3),
		Seed:     openai.Int(11),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "weather", Schema: schema, Strict: openai.Bool(true)},
		}},
	}
	res, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Choices) != 3 {
		t.Fatalf("%d choices", len(res.Choices))
	}
	for i, ch := range res.Choices {
		if ch.Index != int64(i) || ch.FinishReason != "stop" {
			t.Errorf("choice %d: index %d finish %q", i, ch.Index, ch.FinishReason)
		}
		checkSchemaOutput(t, ref, string(schemaJSON), ch.Message.Content)
	}
	prompt := res.Usage.PromptTokens
	if res.Usage.TotalTokens != prompt+res.Usage.CompletionTokens {
		t.Errorf("usage %+v", res.Usage)
	}

	// Streamed: the accumulator of the client rebuilds the same choices.
	stream := c.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	for i, ch := range acc.Choices {
		if ch.Message.Content != res.Choices[i].Message.Content {
			t.Errorf("streamed choice %d: %q, not streamed %q", i, ch.Message.Content, res.Choices[i].Message.Content)
		}
	}

	// json_object.
	obj, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:          demo.Name,
		Messages:       []openai.ChatCompletionMessageParamUnion{openai.UserMessage("an object")},
		MaxTokens:      openai.Int(200),
		Seed:           openai.Int(2),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := obj.Choices[0]; got.FinishReason == "stop" {
		var m map[string]any
		if err := json.Unmarshal([]byte(got.Message.Content), &m); err != nil {
			t.Errorf("json_object gave %q: %v", got.Message.Content, err)
		}
	} else if !strings.HasPrefix(strings.TrimSpace(got.Message.Content), "{") {
		t.Errorf("json_object gave %q", got.Message.Content)
	}

	// Completions: n, logit_bias (+100 on one token makes it every token),
	// and response_format (an extension of this endpoint, as in vLLM).
	const forced = 300
	comp, err := c.Completions.New(ctx, openai.CompletionNewParams{
		Model:       openai.CompletionNewParamsModel(demo.Name),
		Prompt:      openai.CompletionNewParamsPromptUnion{OfString: openai.String("package main")},
		N:           openai.Int(2),
		MaxTokens:   openai.Int(3),
		Temperature: openai.Float(0.8),
		LogitBias:   map[string]int64{fmt.Sprint(forced): 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := e.tok.Encode("package main", true)
	all := append(append([]int(nil), ids...), forced, forced, forced)
	want := strings.TrimPrefix(e.tok.Decode(all, true), e.tok.Decode(ids, true))
	if len(comp.Choices) != 2 || comp.Usage.CompletionTokens != 6 || comp.Usage.PromptTokens != int64(len(ids)) {
		t.Fatalf("completions n=2: %d choices, usage %+v", len(comp.Choices), comp.Usage)
	}
	for _, ch := range comp.Choices {
		if ch.Text != want {
			t.Errorf("logit_bias +100: %q, want %q", ch.Text, want)
		}
	}
	comp, err = c.Completions.New(ctx, openai.CompletionNewParams{
		Model:  openai.CompletionNewParamsModel(demo.Name),
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("weather:")},
	}, option.WithJSONSet("response_format", map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "w", "schema": schema}}),
		option.WithJSONSet("max_tokens", 300))
	if err != nil {
		t.Fatal(err)
	}
	if comp.Choices[0].FinishReason != "stop" {
		t.Fatalf("completion under a schema: finish %q, %q", comp.Choices[0].FinishReason, comp.Choices[0].Text)
	}
	checkSchemaOutput(t, ref, string(schemaJSON), comp.Choices[0].Text)

	// An unsupported keyword: a 400 whose param points at it.
	bad := params
	bad.ResponseFormat.OfJSONSchema.JSONSchema.Schema = map[string]any{"type": "object", "properties": map[string]any{"x": map[string]any{"type": "string", "contentEncoding": "base64"}}}
	_, err = c.Chat.Completions.New(ctx, bad)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "unsupported_schema" ||
		apiErr.Param != "response_format.json_schema.schema.properties.x" || !strings.Contains(apiErr.Message, "contentEncoding") {
		t.Errorf("unsupported keyword: %v", err)
	}
	waitIdle(t, e.eng)
}
