package loadgen

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// maxEventBytes bounds one server-sent event.
const maxEventBytes = 4 << 20

// errEventTooLong: an event beyond maxEventBytes.
var errEventTooLong = errors.New("server-sent event longer than 4 MiB")

// sseReader reads the data of server-sent events
// (https://html.spec.whatwg.org/multipage/server-sent-events.html): lines
// "data: X" accumulate, joined by newlines, until a blank line ends the
// event; comments (":…") and other fields are skipped. A stream that ends
// mid-event yields that event.
type sseReader struct {
	r    *bufio.Reader
	data []byte
}

func newSSEReader(r io.Reader) *sseReader { return &sseReader{r: bufio.NewReaderSize(r, 32<<10)} }

// next returns the next event's data (valid until the following call), or
// io.EOF at the end of the stream.
func (s *sseReader) next() ([]byte, error) {
	s.data = s.data[:0]
	has := false
	for {
		line, err := s.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && has {
				return s.data, nil
			}
			return nil, err
		}
		if len(line) == 0 {
			if has {
				return s.data, nil
			}
			continue
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		if string(field) != "data" {
			continue // comments, event:, id:, retry:
		}
		if has {
			s.data = append(s.data, '\n')
		}
		if len(s.data)+len(value) > maxEventBytes {
			return nil, errEventTooLong
		}
		s.data = append(s.data, value...)
		has = true
	}
}

// readLine returns one line without its end (\n or \r\n).
func (s *sseReader) readLine() ([]byte, error) {
	var line []byte
	for {
		frag, err := s.r.ReadSlice('\n')
		if len(line)+len(frag) > maxEventBytes {
			return nil, errEventTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			line = append(line, frag...)
			continue
		}
		if line != nil {
			frag = append(line, frag...)
		}
		if err != nil {
			if len(frag) > 0 && errors.Is(err, io.EOF) {
				return bytes.TrimRight(frag, "\r"), nil
			}
			return nil, err
		}
		return bytes.TrimRight(frag[:len(frag)-1], "\r"), nil
	}
}

// chunk is the part of a streamed chat.completion.chunk or
// text_completion that the load generator reads.
type chunk struct {
	Choices []struct {
		Text  string `json:"text"`
		Delta struct {
			Content          string `json:"content"`
			ReasoningContent string `json:"reasoning_content"`
			Reasoning        string `json:"reasoning"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// text returns the generated text in c (content, reasoning or completion
// text of its first choice).
func (c *chunk) text() string {
	if len(c.Choices) == 0 {
		return ""
	}
	ch := &c.Choices[0]
	return ch.Text + ch.Delta.Content + ch.Delta.ReasoningContent + ch.Delta.Reasoning
}

// errorMessage returns the message of an in-band error, "" when none.
func (c *chunk) errorMessage() string {
	if len(c.Error) == 0 || string(c.Error) == "null" {
		return ""
	}
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(c.Error, &e) == nil && e.Message != "" {
		return e.Message
	}
	var s string
	if json.Unmarshal(c.Error, &s) == nil && s != "" {
		return s
	}
	return string(c.Error)
}
