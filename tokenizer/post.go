package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
)

// postProcessor adds special tokens around an encoded sequence.
type postProcessor interface {
	process(ids []int) []int
}

// templateProcessor puts fixed ids before and after the sequence.
type templateProcessor struct {
	prefix, suffix []int
}

func (p *templateProcessor) process(ids []int) []int {
	if len(p.prefix) == 0 && len(p.suffix) == 0 {
		return ids
	}
	out := make([]int, 0, len(p.prefix)+len(ids)+len(p.suffix))
	out = append(out, p.prefix...)
	out = append(out, ids...)
	return append(out, p.suffix...)
}

func parsePostProcessor(raw json.RawMessage, t *Tokenizer) (postProcessor, error) {
	typ, err := componentType(raw)
	if err != nil {
		return nil, err
	}
	checkID := func(field string, id int) error {
		if _, ok := t.IDToToken(id); !ok {
			return fmt.Errorf("%s: %s: id %d is not in the vocabulary", typ, field, id)
		}
		return nil
	}
	switch typ {
	case "TemplateProcessing":
		var j struct {
			Single []struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
				Sequence *struct {
					ID string `json:"id"`
				} `json:"Sequence"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				ID  string `json:"id"`
				IDs []int  `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("TemplateProcessing: %v", err)
		}
		p := &templateProcessor{}
		seen := false
		for i, item := range j.Single {
			switch {
			case item.Sequence != nil:
				if item.Sequence.ID != "A" {
					return nil, fmt.Errorf("TemplateProcessing: single[%d]: sequence %q in a single template", i, item.Sequence.ID)
				}
				if seen {
					return nil, fmt.Errorf("TemplateProcessing: single[%d]: sequence A twice", i)
				}
				seen = true
			case item.SpecialToken != nil:
				st, ok := j.SpecialTokens[item.SpecialToken.ID]
				if !ok {
					return nil, fmt.Errorf("TemplateProcessing: single[%d]: special token %q missing from special_tokens", i, item.SpecialToken.ID)
				}
				for _, id := range st.IDs {
					if err := checkID("special_tokens", id); err != nil {
						return nil, err
					}
				}
				if seen {
					p.suffix = append(p.suffix, st.IDs...)
				} else {
					p.prefix = append(p.prefix, st.IDs...)
				}
			default:
				return nil, fmt.Errorf("TemplateProcessing: single[%d]: want SpecialToken or Sequence", i)
			}
		}
		if !seen && len(j.Single) > 0 {
			return nil, errors.New("TemplateProcessing: single: no sequence A")
		}
		return p, nil
	case "ByteLevel":
		return &templateProcessor{}, nil
	case "BertProcessing", "RobertaProcessing":
		var j struct {
			Sep []json.RawMessage `json:"sep"`
			Cls []json.RawMessage `json:"cls"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("%s: %v", typ, err)
		}
		if len(j.Sep) != 2 || len(j.Cls) != 2 {
			return nil, fmt.Errorf("%s: fields sep and cls: want [token, id]", typ)
		}
		var sep, cls int
		if json.Unmarshal(j.Sep[1], &sep) != nil || json.Unmarshal(j.Cls[1], &cls) != nil {
			return nil, fmt.Errorf("%s: fields sep and cls: id is not an integer", typ)
		}
		if err := checkID("sep", sep); err != nil {
			return nil, err
		}
		if err := checkID("cls", cls); err != nil {
			return nil, err
		}
		return &templateProcessor{prefix: []int{cls}, suffix: []int{sep}}, nil
	case "Sequence":
		var j struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("type Sequence: %v", err)
		}
		combined := &templateProcessor{}
		for i, r := range j.Processors {
			p, err := parsePostProcessor(r, t)
			if err != nil {
				return nil, fmt.Errorf("type Sequence.processors[%d]: %w", i, err)
			}
			if tp, ok := p.(*templateProcessor); ok {
				combined.prefix = append(append([]int{}, tp.prefix...), combined.prefix...)
				combined.suffix = append(combined.suffix, tp.suffix...)
			}
		}
		return combined, nil
	}
	return nil, fmt.Errorf("unsupported post-processor type %q", typ)
}
