package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// bucketCmd creates a bucket, or prints the total size of its objects: what
// a backup added is the growth of its bucket, measured the same way for
// every tool and server.
func bucketCmd(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "create" && args[0] != "size") {
		return usageError{"bucket: want create or size"}
	}
	fs := flag.NewFlagSet("bucket "+args[0], flag.ContinueOnError)
	endpoint := fs.String("endpoint", "", "S3 endpoint URL (credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
	bucket := fs.String("bucket", "", "bucket name")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{err.Error()}
	}
	if *endpoint == "" || *bucket == "" {
		return usageError{"bucket: --endpoint and --bucket are required"}
	}
	client := s3.New(s3.Options{
		Region:       "us-east-1",
		BaseEndpoint: endpoint,
		UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(
			os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), ""),
		// Test servers do not all know the newer default checksums.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
	if args[0] == "create" {
		if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: bucket}); err != nil {
			return fmt.Errorf("create bucket %s at %s: %w", *bucket, *endpoint, err)
		}
		return nil
	}
	var total int64
	p := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{Bucket: bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list bucket %s at %s: %w", *bucket, *endpoint, err)
		}
		for _, o := range page.Contents {
			total += aws.ToInt64(o.Size)
		}
	}
	fmt.Println(total)
	return nil
}
